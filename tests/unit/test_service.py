"""RunnerService over a FakeBackend: admission, cancellation, results, error mapping."""

from __future__ import annotations

import asyncio
import threading

import anyio
import pytest

from runner.errors import Busy, ImageNotFound
from runner.models import RunRequest
from runner.service import RunnerService
from runner.tenancy import LOCAL
from tests.fakes import FakeBackend, outcome

pytestmark = pytest.mark.anyio

REQUEST = RunRequest(image="img", command=["true"])


class Gate:
    """A backend handler that blocks until released, and says when a run has entered it."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def __call__(self, spec, control):  # type: ignore[no-untyped-def]
        self.entered.release()
        self.release.wait(10)
        return outcome(stdout=b"done")

    async def wait_entered(self) -> None:
        assert await anyio.to_thread.run_sync(self.entered.acquire, True, 10)


async def test_runs_beyond_slots_and_queue_are_refused_busy(make_settings):
    gate = Gate()
    service = RunnerService(
        make_settings(max_concurrent_runs=1, max_queued_runs=1), FakeBackend(gate)
    )
    first = asyncio.create_task(service.run(REQUEST, LOCAL))
    await gate.wait_entered()
    second = asyncio.create_task(service.run(REQUEST, LOCAL))
    while service.admission.waiting == 0:
        await asyncio.sleep(0)
    with pytest.raises(Busy) as caught:
        await service.run(REQUEST, LOCAL)
    assert caught.value.retry_after >= 1
    gate.release.set()
    results = await asyncio.gather(first, second)
    assert [result.stdout for result, _ in results] == ["done", "done"]
    assert service.admission.running == service.admission.waiting == 0


async def test_cancelling_a_run_kills_it_and_waits_for_cleanup(make_settings):
    finished = threading.Event()

    def handler(spec, control):  # type: ignore[no-untyped-def]
        gate.entered.release()
        backend.cancel_called.wait(10)
        assert control.cancelled.is_set()
        finished.set()
        return outcome()

    gate = Gate()
    backend = FakeBackend(handler)
    service = RunnerService(make_settings(), backend)
    task = asyncio.create_task(service.run(REQUEST, LOCAL))
    await gate.wait_entered()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert backend.cancelled == [backend.specs[0].run_id]
    assert finished.is_set()
    assert service.admission.running == 0


async def test_status_reflects_exit_code_and_timeout(make_settings):
    results = {}
    for name, made in {
        "ok": outcome(0),
        "fail": outcome(2),
        "slow": outcome(137, timed_out=True),
    }.items():
        service = RunnerService(make_settings(), FakeBackend(lambda spec, control, made=made: made))
        result, _ = await service.run(REQUEST, LOCAL)
        results[name] = result.status
    assert results == {"ok": "success", "fail": "error: 2", "slow": "timeout"}


async def test_invalid_utf8_output_is_replaced_not_raised(make_settings):
    service = RunnerService(
        make_settings(), FakeBackend(lambda spec, control: outcome(stdout=b"a\xffb"))
    )
    result, _ = await service.run(REQUEST, LOCAL)
    assert result.stdout == "a\ufffdb"


async def test_returned_content_is_base64(make_settings):
    made = outcome(returned={"/out": ("file", b"\x00bytes")})
    service = RunnerService(make_settings(), FakeBackend(lambda spec, control: made))
    result, _ = await service.run(REQUEST, LOCAL)
    returned = result.volumes["/out"]
    assert (returned.type, returned.content) == ("file", "AGJ5dGVz")


async def test_defaults_and_request_limits_reach_the_backend(make_settings):
    backend = FakeBackend()
    service = RunnerService(
        make_settings(default_timeout_seconds=30, default_memory="256m"), backend
    )
    await service.run(REQUEST, LOCAL)
    await service.run(RunRequest(image="img", timeout_seconds=5, memory="64m", cpus=0.5), LOCAL)
    first, second = backend.specs
    assert (first.timeout_seconds, first.memory_bytes, first.network) == (30, 256 * 2**20, "none")
    assert (second.timeout_seconds, second.memory_bytes, second.nano_cpus) == (5, 64 * 2**20, 5e8)


async def test_backend_errors_pass_through_unchanged(make_settings):
    def missing(spec, control):  # type: ignore[no-untyped-def]
        raise ImageNotFound("image: gone", field="image")

    service = RunnerService(make_settings(), FakeBackend(missing))
    with pytest.raises(ImageNotFound):
        await service.run(REQUEST, LOCAL)
    assert service.admission.running == 0


async def test_a_request_lets_go_of_its_base64_once_the_run_holds_the_bytes(make_settings):
    """The text of a large content field must not stay beside its decoded bytes for the
    whole run."""
    seen: list[bytes | None] = []

    def handler(spec, control):  # type: ignore[no-untyped-def]
        seen.append(spec.mounts[0].content)
        return outcome()

    request = RunRequest(image="img", volumes={"/in.txt": {"type": "file", "content": "aGVsbG8="}})
    service = RunnerService(make_settings(), FakeBackend(handler))
    await service.run(request, LOCAL)
    assert seen == [b"hello"]
    assert request.volumes["/in.txt"].content is None
