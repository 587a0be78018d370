"""Tenants from tokens, and the containment rules that hold whatever the configuration."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.engine_models import CreateVolumeRequest
from runner.errors import PolicyRefused
from runner.models import RunRequest
from runner.policy import NEVER_HOST_PATHS, build_run_spec, build_volume_fill
from runner.settings import Settings
from runner.spec import VolumeState
from runner.tenancy import LOCAL, parse_token, tenant_for

TOKENS = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"), min_size=8
)
PERMISSIVE = Settings(
    instance_id="unit",
    allowed_host_paths=["/"],
    allowed_volumes=["*"],
    allowed_volume_options={"type": ["none", "tmpfs"], "o": ["bind", "rbind"], "device": ["/"]},
)


@given(token=TOKENS, name=st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True))
def test_a_named_token_is_the_same_tenant_as_the_bare_token(token, name):
    bare_token, bare = parse_token(token)
    named_token, named = parse_token(f"{name}:{token}")
    assert bare_token == named_token == token
    assert named.name == name
    assert named.label == bare.label
    assert token not in bare.name and token not in bare.label


@given(first=TOKENS, second=TOKENS)
def test_different_tokens_are_different_tenants(first, second):
    if first != second:
        assert tenant_for(first).label != tenant_for(second).label


def test_the_label_is_a_keyed_hash_every_runner_computes_alike():
    assert tenant_for("tok").label == tenant_for("tok", "renamed").label
    assert len(tenant_for("tok").label) == 32
    assert tenant_for("tok").label != LOCAL.label


def _disguised(path: str) -> st.SearchStrategy[str]:
    """`path` written as a caller might disguise it: extra slashes, `.`, `x/..` detours."""
    parts = path.strip("/").split("/")
    detour = st.sampled_from(["", ".", "x/..", "./."])
    return st.tuples(
        st.sampled_from(["/", "//", "///"]),
        st.lists(detour, min_size=len(parts), max_size=len(parts)),
        st.sampled_from(["", "/", "/.", "/sub"]),
    ).map(
        lambda t: (
            t[0] + "/".join(f"{d}/{p}" if d else p for d, p in zip(t[1], parts, strict=True)) + t[2]
        )
    )


@given(st.sampled_from(NEVER_HOST_PATHS).flatmap(_disguised))
def test_the_engine_s_socket_and_state_are_never_mounted_however_written(host_path):
    request = RunRequest(image="busybox", volumes={"/h": {"type": "host", "host_path": host_path}})
    with pytest.raises(PolicyRefused, match="never mounted"):
        build_run_spec(request, PERMISSIVE, "run-1", LOCAL, lambda name: None)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["none", "tmpfs"]),
            "o": st.sampled_from(["bind", "rbind"]),
            "device": st.just("/"),
        },
    ).filter(lambda options: options and (options.get("type") != "tmpfs" or len(options) > 1))
)
def test_volume_options_that_bind_the_host_are_refused_even_when_allowed(options):
    request = CreateVolumeRequest(name="vv", driver_opts=options)
    with pytest.raises(PolicyRefused) as caught:
        build_volume_fill(request, PERMISSIVE, LOCAL, lambda name: None)
    assert caught.value.field == "driver_opts"


def test_an_allowed_volume_that_binds_the_engine_s_state_is_refused():
    request = RunRequest(image="busybox", volumes={"/v": {"type": "volume", "name": "shared"}})
    state = VolumeState(tenant=None, host_path="/var/lib/docker")
    with pytest.raises(PolicyRefused, match="never mounted"):
        build_run_spec(request, PERMISSIVE, "run-1", LOCAL, lambda name: state)


def test_another_tenant_s_volume_is_refused_like_one_that_does_not_exist():
    settings = Settings(instance_id="unit")
    request = RunRequest(image="busybox", volumes={"/v": {"type": "volume", "name": "data"}})
    theirs = VolumeState(tenant=tenant_for("other").label)
    refusals = []
    for state in (theirs, None):
        with pytest.raises(PolicyRefused) as caught:
            build_run_spec(request, settings, "run-1", tenant_for("me"), lambda name: state)  # noqa: B023
        refusals.append(caught.value.message)
    assert refusals[0] == refusals[1]
    mine = VolumeState(tenant=tenant_for("me").label)
    spec, _ = build_run_spec(request, settings, "run-1", tenant_for("me"), lambda name: mine)
    assert spec.tenant == tenant_for("me").label


def test_another_tenant_s_volume_is_refused_even_when_the_operator_allows_every_name():
    request = RunRequest(image="busybox", volumes={"/v": {"type": "volume", "name": "data"}})
    theirs = VolumeState(tenant=tenant_for("other").label)
    with pytest.raises(PolicyRefused) as caught:
        build_run_spec(request, PERMISSIVE, "run-1", tenant_for("me"), lambda name: theirs)
    assert caught.value.field == "volumes['/v'].name"
    assert "not a volume you created" in caught.value.message
    unowned = VolumeState(tenant=None)  # the operator's own volume: allowed by name
    spec, _ = build_run_spec(request, PERMISSIVE, "run-1", tenant_for("me"), lambda name: unowned)
    assert [mount.name for mount in spec.mounts] == ["data"]
