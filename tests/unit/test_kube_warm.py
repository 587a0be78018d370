"""Which runs take a Kubernetes warm pod, and what a warm pod is made as (no cluster: the pod
specs are compared as manifests; tests/kubernetes/test_cluster_warm runs them on a real one)."""

from __future__ import annotations

from typing import Any

import pytest

from backends.kubernetes.api import ClusterApi
from backends.kubernetes.expansion import expand, expanded
from backends.kubernetes.jobs import Jobs
from backends.kubernetes.manifests import pod_spec, warm_pod, warm_shape
from backends.kubernetes.warm import WarmPods
from backends.waiter import WAITER
from runner.models import RunRequest
from runner.policy import build_run_spec
from runner.settings import Settings
from runner.spec import RunSpec
from runner.tenancy import LOCAL

ENTRY = "busybox:1.36"
FITS = {"image": ENTRY, "entrypoint": ["sh", "-c"], "command": ["echo hi"]}


@pytest.fixture
def settings() -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        backend="kubernetes",
        kube_helper_image="oneoff-runner:dev",
        warm_pool=[f"{ENTRY}=2", "busybox:latest=1"],
        allowed_runtimes=["gvisor"],
    )


def spec_of(settings: Settings, **request: Any) -> RunSpec:
    spec, _ = build_run_spec(RunRequest(**request), settings, "r1", LOCAL, lambda name: None)
    return spec


def test_a_default_run_with_an_entrypoint_takes_one(settings: Settings) -> None:
    pods = WarmPods(Jobs(ClusterApi(settings)))
    for policy in ("always", "missing", "never"):
        assert pods.entry_for(spec_of(settings, **FITS, pull_policy=policy)) is not None
    same = {**FITS, "env_vars": {"A": "1"}, "working_dir": "/tmp", "timeout_seconds": 5}
    assert pods.entry_for(spec_of(settings, **same)) is not None
    implicit = {**FITS, "image": "busybox"}  # busybox:latest, the other entry
    assert pods.entry_for(spec_of(settings, **implicit)) is not None


@pytest.mark.parametrize(
    "changed",
    [
        {"entrypoint": None, "command": ["sh", "-c", "echo hi"]},  # the image's ENTRYPOINT
        {"image": "busybox:1.37"},
        {"runtime": "gvisor"},
        {"memory": "64m"},
        {"cpus": 0.5},
        {"scratch": "10m"},
        {"user": "1000"},
        {"stdin": "hello"},
        {"env_vars": {"NOT-A-NAME": "x"}},
        {"volumes": {"/in.txt": {"type": "file", "content": "aGk="}}},
        {"volumes": {"/out": {"type": "directory", "response": True}}},
        {"auth_config": {"username": "u", "password": "p"}},
    ],
    ids=lambda changed: ",".join(changed),
)
def test_runs_whose_pod_would_differ_go_as_jobs(settings: Settings, changed: Any) -> None:
    pods = WarmPods(Jobs(ClusterApi(settings)))
    assert pods.entry_for(spec_of(settings, **{**FITS, **changed})) is None


def test_without_a_pool_nothing_takes_one() -> None:
    bare = Settings(_env_file=None, backend="kubernetes", kube_helper_image="x")  # type: ignore[call-arg]
    assert WarmPods(Jobs(ClusterApi(bare))).entry_for(spec_of(bare, **FITS)) is None


def test_a_warm_pod_is_a_default_run_s_pod_waiting_on_its_input(settings: Settings) -> None:
    default = spec_of(settings, image=ENTRY, entrypoint=["true"])
    pod = warm_pod(default, settings, {"name": "oneoff-warm-1", "labels": {}}, 4321)["spec"]
    container = pod["containers"][0]
    assert container.pop("command") == ["/bin/sh", "-c", WAITER]
    assert (container.pop("stdin"), container.pop("stdinOnce")) == (True, True)
    assert container.pop("imagePullPolicy") == "Always"
    assert pod.pop("activeDeadlineSeconds") == 4321
    cold = pod_spec(default, settings, None, None)
    del cold["activeDeadlineSeconds"]
    del cold["containers"][0]["command"], cold["containers"][0]["imagePullPolicy"]
    assert pod == cold
    assert warm_shape(default, settings)["containers"][0]["resources"] == container["resources"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a$$b", "a$b"),
        ("$(A)-$(B)", "1-two"),
        ("$$(A)", "$(A)"),
        ("$(A", "$(A"),
        ("$x $", "$x $"),
        ("$(NOPE)", None),  # the kubelet would look in its own variables: left to a Job
    ],
)
def test_the_kubelet_s_expansion_is_the_line_s(text: str, expected: str | None) -> None:
    assert expand(text, {"A": "1", "B": "two"}) == expected


def test_env_values_see_only_the_variables_before_them() -> None:
    env = {"A": "1", "B": "x$(A)"}
    assert expanded(env, ["echo", "$(B)"]) == ({"A": "1", "B": "x1"}, ["echo", "x1"])
    assert expanded({"B": "x$(A)", "A": "1"}, ["true"]) is None


def test_a_run_naming_a_variable_only_the_kubelet_knows_goes_as_a_job(settings: Settings) -> None:
    pods = WarmPods(Jobs(ClusterApi(settings)))
    known = {**FITS, "command": ["echo $(A)"], "env_vars": {"A": "1"}}
    assert pods.entry_for(spec_of(settings, **known)) is not None
    unknown = {**FITS, "command": ["echo $(KUBERNETES_SERVICE_HOST)"]}
    assert pods.entry_for(spec_of(settings, **unknown)) is None
