"""Stopping the service with async runs in every state: what the API says afterwards is what
happened (a run said not to have run never runs), over a FakeBackend whose launches block."""

from __future__ import annotations

import asyncio
import threading

import anyio
import pytest

from runner.errors import BackendUnavailable, Cancelled
from runner.models import RunRequest
from runner.runs import SHUT_DOWN
from runner.service import RunnerService
from runner.spec import RunControl, RunSpec
from runner.tenancy import LOCAL
from tests.fakes import FakeBackend, outcome

pytestmark = pytest.mark.anyio

REQUEST = RunRequest(image="img", command=["true"])


class Launches:
    """A launch handler that holds each launch until released or cancelled."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def __call__(self, spec: RunSpec, control: RunControl):  # type: ignore[no-untyped-def]
        self.entered.release()
        while not self.release.wait(0.01):
            if control.cancelled.is_set():
                raise Cancelled("the run was cancelled before it started")
        return outcome()

    async def wait_entered(self) -> None:
        assert await anyio.to_thread.run_sync(self.entered.acquire, True, 10)


async def started_service(launches: Launches, make_settings, **settings: object):  # type: ignore[no-untyped-def]
    backend = FakeBackend(launches)
    service = RunnerService(make_settings(**settings), backend)
    await service.start()
    return service, backend


async def test_a_queued_run_never_starts_and_its_record_says_so(make_settings):
    launches = Launches()
    service, backend = await started_service(launches, make_settings, max_concurrent_runs=1)
    first = await service.runs.start(REQUEST, LOCAL, None)
    await launches.wait_entered()
    queued = await service.runs.start(REQUEST, LOCAL, None)
    stopping = asyncio.create_task(service.stop())
    launches.release.set()
    await stopping
    assert [spec.run_id for spec in backend.specs] == [first.run_id]
    assert first.run_id not in backend.recorded
    record = backend.recorded[queued.run_id]
    assert (record.state, record.error) == ("failed", SHUT_DOWN)


async def test_a_run_starting_within_the_grace_is_handed_over(make_settings):
    launches = Launches()
    service, backend = await started_service(launches, make_settings, shutdown_grace_seconds=30)
    starting = await service.runs.start(REQUEST, LOCAL, None)
    await launches.wait_entered()
    stopping = asyncio.create_task(service.stop())
    launches.release.set()
    await stopping
    assert starting.run_id in backend.launched
    assert starting.run_id not in backend.recorded


async def test_a_run_still_starting_after_the_grace_is_stopped_and_says_it_never_ran(
    make_settings,
):
    launches = Launches()
    service, backend = await started_service(launches, make_settings, shutdown_grace_seconds=0)
    starting = await service.runs.start(REQUEST, LOCAL, None)
    await launches.wait_entered()
    await service.stop()
    assert starting.run_id not in backend.launched
    record = backend.recorded[starting.run_id]
    assert (record.state, record.error) == ("failed", SHUT_DOWN)


async def test_no_async_run_is_accepted_once_stopping(make_settings):
    service, _ = await started_service(Launches(), make_settings)
    await service.stop()
    with pytest.raises(BackendUnavailable, match="shutting down"):
        await service.runs.start(REQUEST, LOCAL, None)
