"""Every limit has a floor as well as a ceiling: no request value reaches the engine as 0 (which
the engine reads as *unlimited*) or below what the engine accepts."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from runner.engine_models import CreateVolumeRequest
from runner.errors import InvalidRequest, PolicyRefused
from runner.limits import MIN_CPUS, MIN_MEMORY_BYTES, MIN_TIMEOUT_SECONDS
from runner.models import RunRequest
from runner.policy import build_run_spec
from runner.rest.schemas import OWN_VOLUME_NAME
from runner.settings import Settings
from runner.tenancy import LOCAL
from tests.helpers import run_body

SETTINGS = Settings(instance_id="limits", max_memory="64m", default_memory="32m")


@pytest.mark.parametrize(
    ("fields", "field", "minimum"),
    [
        ({"memory": "0"}, "memory", "6m"),
        ({"memory": "0.4"}, "memory", "6m"),
        ({"memory": "5m"}, "memory", "6m"),
        ({"memory": "1k"}, "memory", "6m"),
        ({"cpus": 1e-10}, "cpus", "0.01"),
        ({"cpus": 0}, "cpus", "0.01"),
        ({"timeout_seconds": 1e-9}, "timeout_seconds", "0.1"),
    ],
)
def test_limits_below_their_floor_are_422_naming_the_field_and_the_minimum(
    api, fields, field, minimum
):
    response = api.post("/run", json=run_body("true", **fields))
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert minimum in response.json()["message"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"default_memory": "0"},
        {"max_memory": "1k"},
        {"max_cpus": 1e-10},
        {"default_timeout_seconds": 0},
    ],
)
def test_operator_limits_have_the_same_floors(overrides):
    with pytest.raises(ValidationError):
        Settings(instance_id="limits", **overrides)


def accepted(fields: dict[str, object]):  # type: ignore[no-untyped-def]
    try:
        request = RunRequest.model_validate(run_body("true", **fields))
        spec, _ = build_run_spec(request, SETTINGS, "r", LOCAL, lambda name: None)
        return spec
    except (ValidationError, InvalidRequest, PolicyRefused):
        return None


numbers = st.one_of(st.floats(), st.integers(-(2**70), 2**70))
sizes = st.builds(
    lambda number, unit: f"{number}{unit}",
    st.one_of(st.integers(0, 2**40), st.floats(0, 1e6, allow_nan=False).map(lambda f: f"{f:f}")),
    st.sampled_from(["", "b", "k", "m", "g", "t", "K", "mb", "MiB"]),
)


@given(memory=st.one_of(sizes, st.text(max_size=12)), cpus=numbers, timeout=numbers)
def test_no_request_lifts_a_limit(memory, cpus, timeout):
    spec = accepted({"memory": memory, "cpus": cpus, "timeout_seconds": timeout})
    if spec is not None:
        assert MIN_MEMORY_BYTES <= spec.memory_bytes <= 64 * 1024 * 1024
        assert MIN_CPUS * 1e9 <= spec.nano_cpus <= SETTINGS.max_cpus * 1e9
        assert MIN_TIMEOUT_SECONDS <= spec.timeout_seconds <= SETTINGS.max_timeout_seconds


@given(label=st.text(max_size=40), value=st.text(max_size=20))
def test_no_volume_label_in_the_runners_namespace_is_accepted(label, value):
    body = {"name": "vv", "labels": {label: value}}
    reserved = label.strip().lower().startswith("oneoff-runner")
    try:
        CreateVolumeRequest.model_validate(body)
    except ValidationError as exc:
        assert reserved or "\0" in label + value, exc
    else:
        assert not reserved


@given(prefix=st.sampled_from(["oneoff-runner.", "ONEOFF-RUNNER.", " oneoff-runner"]))
def test_reserved_labels_are_refused_in_any_spelling(prefix):
    with pytest.raises(ValidationError, match="reserved"):
        CreateVolumeRequest.model_validate({"name": "vv", "labels": {prefix + "role": "x"}})


@pytest.mark.parametrize(
    "name",
    [
        "oneoff-lease-0123abcd-2",
        "oneoff-hosts-x",
        "oneoff-0123456789abcdef",
        "oneoff-0123456789abcdef-record",
        "oneoff-0123456789abcdef-delivered",
        "oneoff-0123456789abcdef-claim",
        "oneoff-expiry-x",
    ],
)
def test_a_volume_cannot_take_a_name_the_runner_gives_its_own(api, name):
    """A caller's volume named like a lease or a hosts file would stand in for it: the engine
    answers the runner's create of an existing name with the existing volume."""
    response = api.post("/volume", json={"name": name})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "name"
    assert "runner's own" in response.json()["message"]
    assert not re.match(OWN_VOLUME_NAME, name)  # the OpenAPI says so too


def test_other_names_starting_with_oneoff_are_a_caller_s_to_take(api):
    assert api.post("/volume", json={"name": "oneoff-data"}).status_code == 200
