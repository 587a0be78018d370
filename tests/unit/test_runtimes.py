"""A request may choose an OCI runtime only from the operator's set; the default is theirs."""

from __future__ import annotations

import pytest

from runner.errors import PolicyRefused
from runner.models import RunRequest
from runner.policy import build_run_spec
from runner.settings import Settings
from runner.tenancy import LOCAL
from tests.helpers import run_body


def runtime_of(settings: Settings, **fields: object) -> str | None:
    request = RunRequest.model_validate(run_body("true", **fields))
    spec, _ = build_run_spec(request, settings, "r", LOCAL, lambda name: None)
    return spec.runtime


def test_a_runtime_outside_the_allowed_set_is_403_naming_the_setting(api) -> None:  # type: ignore[no-untyped-def]
    response = api.post("/run", json=run_body("true", runtime="runsc"))
    assert response.status_code == 403
    assert response.json()["field"] == "runtime"
    assert "RUNNER_ALLOWED_RUNTIMES" in response.json()["message"]


@pytest.mark.parametrize(
    ("settings", "asked", "runs_under"),
    [
        ({}, None, None),
        ({"runtime": "runsc"}, None, "runsc"),
        ({"runtime": "runsc"}, "runsc", "runsc"),
        ({"allowed_runtimes": "runsc,runc"}, "runc", "runc"),
        ({"runtime": "runsc", "allowed_runtimes": "runc"}, "runc", "runc"),
    ],
)
def test_the_runtime_a_run_gets(
    settings: dict[str, str], asked: str | None, runs_under: str | None
):
    fields = {} if asked is None else {"runtime": asked}
    assert runtime_of(Settings(instance_id="rt", **settings), **fields) == runs_under  # type: ignore[arg-type]


@pytest.mark.parametrize("asked", ["runc", "kata", "io.containerd.runc.v2"])
def test_the_default_runtime_does_not_open_others(asked: str) -> None:
    with pytest.raises(PolicyRefused, match="runtime"):
        runtime_of(
            Settings(instance_id="rt", runtime="runsc", allowed_runtimes=["runsc"]), runtime=asked
        )
