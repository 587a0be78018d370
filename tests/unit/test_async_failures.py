"""An async run meets an error of the runner's own (a bug: not a `RunnerError`) at any point of
its life: it still ends, in a recorded `failed` state whose message says so, and is removed;
never a 202 followed by 404s, never a 500 for the whole TTL. Injected by a FakeBackend that
raises where the Docker backend once did (tarfile's errors, an OverflowError)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from api_app import create_app
from runner.spec import Outcome, RunControl, RunSpec
from tests.fakes import FakeBackend
from tests.helpers import LocalClient, run_body


def crash(spec: RunSpec, control: RunControl) -> Outcome:
    raise OverflowError("cannot convert float infinity to integer")


class CrashesWatching(FakeBackend):
    def wait_run(self, run_id: str) -> None:
        raise ValueError("a bug while watching")


class CrashesCollecting(FakeBackend):
    def collect_run(self, run_id: str) -> Outcome:
        raise KeyError("a bug while collecting")


Started = Callable[[FakeBackend], tuple[TestClient, str]]


@pytest.fixture
def started(make_settings) -> Iterator[Started]:  # type: ignore[no-untyped-def]
    """`started(backend)`: an app over it, one run started and settled: (app, run id)."""

    def start(backend: FakeBackend) -> tuple[TestClient, str]:
        api = LocalClient(create_app(make_settings(), backend=backend)).__enter__()
        opened.append(api)
        accepted = api.post("/runs", json=run_body("true"))
        assert accepted.status_code == 202
        api.portal.call(api.app.state.service.runs.until_settled)  # type: ignore[attr-defined]
        return api, accepted.json()["run_id"]

    opened: list[TestClient] = []
    yield start
    for api in opened:
        api.__exit__(None, None, None)


@pytest.mark.parametrize(
    ("backend", "doing"),
    [
        (lambda: FakeBackend(crash), "starting"),
        (CrashesWatching, "watching"),
        (CrashesCollecting, "collecting the result of"),
    ],
    ids=["launch", "wait", "collect"],
)
def test_an_internal_error_ends_the_run_failed_and_recorded(started, backend, doing):
    fake = backend()
    api, run_id = started(fake)
    first, again = api.get(f"/runs/{run_id}"), api.get(f"/runs/{run_id}")
    assert first.status_code == again.status_code == 200
    assert first.json()["state"] == again.json()["state"] == "failed"
    assert f"the runner failed while {doing} the run" in first.json()["error"]
    assert fake.recorded[run_id].state == "failed"
    assert run_id not in fake.launched  # removed: nothing of it is left running


def test_an_internal_error_at_launch_is_counted(started):
    api, _ = started(FakeBackend(crash))
    assert 'outcome="internal_error"' in api.get("/metrics").text
