"""`RunnerService`: the one thing REST and MCP call.

It admits a run (or answers Busy), resolves the request against settings off the event loop,
runs the backend in a worker thread, turns a cancelled request into a killed and removed
container, times the phases, logs one line per run, and reaps leftovers periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

import anyio

from runner.admission import Admission, Ticket
from runner.archive_streams import Prepended
from runner.backend import Backend
from runner.engine_models import (
    ContainerInfo,
    CreateVolumeRequest,
    CreateVolumeResult,
    Health,
    ImageInfo,
    PulledImage,
    PullImageRequest,
    RemovedVolume,
    VolumeInfo,
)
from runner.errors import (
    BackendUnavailable,
    Cancelled,
    PolicyRefused,
    RunnerError,
    VolumesFull,
)
from runner.metrics import Metrics
from runner.models import RunRequest, RunResult, new_run_id
from runner.policy import (
    build_pull_spec,
    build_run_spec,
    build_volume_fill,
    require_own_volume,
    runnable_images,
)
from runner.runs import AsyncRuns
from runner.settings import Settings
from runner.shutdown import also_on_signal
from runner.spec import Arriving, EventSink, Outcome, ReturnedFile, RunControl, RunSpec
from runner.tenancy import Tenant
from runner.threads import in_worker, on_this_loop, own_thread
from runner.uploads import Uploads
from runner.workspaces import Workspaces

log = logging.getLogger("oneoff_runner")

T = TypeVar("T")
CANCEL_CLEANUP_WAIT_SECONDS = 120
HEALTH_FRESH_SECONDS = 1.0
HEALTH_STALE_SECONDS = 10.0


class RunnerService:
    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        self.admission = Admission(settings.max_concurrent_runs, settings.max_queued_runs)
        self._run_threads = anyio.CapacityLimiter(settings.max_concurrent_runs)
        self._background: list[asyncio.Task[None]] = []
        self._grace: asyncio.Task[None] | None = None
        self._in_flight: dict[str, RunControl] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing_at: float | None = None
        self.metrics = Metrics(
            running=lambda: self.admission.running,
            waiting=lambda: self.admission.queued,
            tenants=settings.metrics_tenants,
        )
        self._health: Health | RunnerError | None = None
        self._health_at = 0.0
        self._health_refresh: asyncio.Task[None] | None = None
        self.runs = AsyncRuns(settings, backend, self.admission, self.metrics, self.resolve)
        self.workspaces = Workspaces(settings, backend)
        self._creating_volume: dict[str, asyncio.Lock] = {}
        """One volume creation at a time per tenant, so that its volume bound holds here."""

    async def start(self) -> None:
        """Take this runner's lease, reap what runners that are gone left, and keep doing both
        in the background."""
        await self._renew_lease()
        self.keep_lease()
        await self._reap()
        try:
            await self.runs.resume()
        except RunnerError as exc:
            log.warning("async runs left running could not be resumed: %s", exc.message)
        self._background.append(
            asyncio.create_task(self._every(self.settings.reap_interval_seconds, self._reap))
        )

    def keep_lease(self) -> None:
        """Renew this runner's lease in the background until `stop` (the backend takes it
        before it makes anything): what it makes stays its own for as long as it lives. All
        the command line's runs need of `start`."""
        self._background.append(
            asyncio.create_task(self._every(self.settings.lease_seconds / 3, self._renew_lease))
        )

    def begin_shutdown(self) -> None:
        """SIGTERM: refuse new runs now, and kill synchronous runs still in flight once
        `shutdown_grace_seconds` have passed (also when the server waits for requests)."""
        if self._closing_at is None:
            self._closing_at = time.monotonic()
            self.runs.refuse_new()
            self._grace = asyncio.ensure_future(self._end_of_grace())

    @property
    def closing(self) -> bool:
        return self._closing_at is not None

    def _grace_left(self) -> float:
        elapsed = time.monotonic() - (self._closing_at or time.monotonic())
        return max(self.settings.shutdown_grace_seconds - elapsed, 0.0)

    async def _end_of_grace(self) -> None:
        with anyio.move_on_after(self._grace_left()):
            await self._idle.wait()
        for run_id, control in list(self._in_flight.items()):
            control.cancelled.set()
            await self.call(self._cancel_quietly, run_id)

    async def stop(self) -> None:
        """Refuse new runs; give runs in flight, and async runs being started, what is left of
        `shutdown_grace_seconds`; kill and remove the synchronous runs still there; then release
        the lease (what is left is then anyone's to remove)."""
        self.begin_shutdown()
        await self.runs.stop(self._grace_left())
        assert self._grace is not None
        await self._grace
        with anyio.move_on_after(CANCEL_CLEANUP_WAIT_SECONDS):
            await self._idle.wait()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.call(self.backend.close)

    async def run(
        self,
        request: RunRequest,
        tenant: Tenant,
        listener: EventSink | None = None,
        uploads: Uploads | None = None,
        ticket: Ticket | None = None,
        raw_returned: bool = False,
    ) -> tuple[RunResult, dict[str, ReturnedFile]]:
        """Run `request` for `tenant` to its end: its result, and with `raw_returned` its
        returned paths as streams (the binary path) instead of base64 in the result.

        - `listener` gets (kind, text) events on the event loop: the run's phases, its output;
        - `uploads`: content parts still arriving;
        - `ticket`: a queue place reserved before the request body was read.
        """
        started = time.perf_counter()
        run_id = new_run_id()
        try:
            if self.closing:
                raise BackendUnavailable("the runner is shutting down; retry on another replica")
            async with self.admission.slot(ticket):
                spec, arriving = await self.call(self.resolve, request, run_id, tenant, uploads)
                spec = dataclasses.replace(spec, raw_returned=raw_returned)
                events = on_this_loop(listener) if listener else None
                control = RunControl(on_event=events, uploads=arriving)
                outcome = await self._execute(spec, control)
        except RunnerError as exc:
            error = self._as_shutdown(exc)
            self._refused(run_id, tenant, request.image, error)
            if error is exc:
                raise
            raise error from exc
        result = outcome.result(run_id, time.perf_counter() - started)
        self._finished(result, tenant, request.image, outcome.phases)
        return result, outcome.files

    def _refused(self, run_id: str, tenant: Tenant, image: str, error: RunnerError) -> None:
        """One metric and one log line for a run that could not happen."""
        self.metrics.record(tenant.name, error.code, {})
        log.info(
            "run %s refused: tenant=%s %s",
            run_id,
            tenant.name,
            error.message,
            extra={"run_id": run_id, "tenant": tenant.name, "image": image, "outcome": error.code},
        )

    def _finished(
        self, result: RunResult, tenant: Tenant, image: str, phases: dict[str, float]
    ) -> None:
        """One metric and one log line for a run that ran, with its phase timings."""
        outcome = "timeout" if result.timed_out else result.status.split(":")[0]
        self.metrics.record(tenant.name, outcome, phases)
        log.info(
            "run %s tenant=%s image=%s status=%r exit_code=%s time=%.3fs phases=%s",
            result.run_id,
            tenant.name,
            image,
            result.status,
            result.exit_code,
            result.execution_time,
            ",".join(f"{name}:{seconds}" for name, seconds in phases.items()),
            extra={
                "run_id": result.run_id,
                "tenant": tenant.name,
                "image": image,
                "outcome": outcome,
                "exit_code": result.exit_code,
                "execution_time": result.execution_time,
                "phases": phases,
            },
        )

    def _as_shutdown(self, error: RunnerError) -> RunnerError:
        """A run killed because the runner stopped says so (503), not that a caller cancelled."""
        if not (isinstance(error, Cancelled) and self.closing):
            return error
        return BackendUnavailable(
            "the runner shut down while the run was in flight: it was killed after "
            f"shutdown_grace_seconds ({self.settings.shutdown_grace_seconds:g}); run it again "
            "on another replica"
        )

    def resolve(
        self, request: RunRequest, run_id: str, tenant: Tenant, uploads: Uploads | None = None
    ) -> tuple[RunSpec, Arriving | None]:
        """The request against the policy, for `tenant` (blocking: call it in a worker), and
        its content parts still to arrive (`uploads`), checked as they are read."""
        volumes = self.backend.volume_state
        resolved = build_run_spec(request, self.settings, run_id, tenant, volumes, uploads)
        request.drop_content()
        return resolved

    async def run_file(self, tenant: Tenant, run_id: str, path: str) -> tuple[str, Iterator[bytes]]:
        """A finished async run's `response: true` path as a stream, for the tenant that owns
        the run; an error (unknown run or path, engine refusal) comes before its first byte,
        so it can still be a 4xx."""
        await self.runs.require(tenant, run_id)
        kind, chunks = await self.call(self.backend.run_file, run_id, path)
        first = await self.call(next, chunks, b"")
        return kind, Prepended(first, chunks)

    async def create_volume(
        self, request: CreateVolumeRequest, tenant: Tenant
    ) -> CreateVolumeResult:
        fill = await self.call(
            build_volume_fill, request, self.settings, tenant, self.backend.volume_state
        )
        async with self._creating_volume.setdefault(tenant.label, asyncio.Lock()):
            await self._within_volume_bound(request.name, tenant)
            detail = await self.call(self.backend.create_volume, fill)
        log.info("volume %r: %s (tenant=%s)", request.name, detail, tenant.name)
        return CreateVolumeResult(name=request.name, detail=detail)

    async def _within_volume_bound(self, name: str, tenant: Tenant) -> None:
        """A new volume only while the tenant has fewer than `max_volumes_per_tenant` (counted
        on the engine, so every runner on it counts the same ones); refilling one of its own
        adds none."""
        names = {volume.name for volume in await self.list_volumes(tenant)}
        bound = self.settings.max_volumes_per_tenant
        if name in names or len(names) < bound:
            return
        raise VolumesFull(
            f"name: you have {len(names)} named volumes, the operator's bound "
            f"(RUNNER_MAX_VOLUMES_PER_TENANT: {bound}); remove one you no longer need "
            "(DELETE /volume/{name}, or the MCP tool remove_volume), then create it again",
            field="name",
        )

    async def list_volumes(self, tenant: Tenant) -> list[VolumeInfo]:
        """The named volumes the tenant created; no other volume is ever listed."""
        return await self.call(functools.partial(self.backend.list_volumes, tenant=tenant.label))

    async def remove_volume(self, name: str, tenant: Tenant) -> RemovedVolume:
        """Remove one of the tenant's volumes (any other name is a 404, confirming nothing)."""
        await self.call(require_own_volume, name, tenant, self.backend.volume_state)
        await self.call(self.backend.remove_volume, name)
        log.info("volume %r removed (tenant=%s)", name, tenant.name)
        return RemovedVolume(name=name)

    async def health(self) -> Health:
        """The backend's health, at most a second old when it is asked often.

        Under load the engine answers slowly, and a load balancer's probe must not queue behind
        it: a recent answer is served at once while one refresh runs in the background; an
        answer older than `HEALTH_STALE_SECONDS` is never served.
        """
        age = time.monotonic() - self._health_at
        if self._health is None or age > HEALTH_STALE_SECONDS:
            await self._refresh_health()
        elif age > HEALTH_FRESH_SECONDS and (
            self._health_refresh is None or self._health_refresh.done()
        ):
            self._health_refresh = asyncio.create_task(self._refresh_health())
        assert self._health is not None
        if isinstance(self._health, RunnerError):
            raise self._health
        return self._health

    def _refreshing(self) -> bool:
        return self._health_refresh is not None and not self._health_refresh.done()

    async def _refresh_health(self) -> None:
        try:
            self._health = await self.call(self.backend.health)
        except RunnerError as exc:
            # Kept without its chain: the SDK's exception would keep its sockets alive.
            exc.__cause__ = exc.__context__ = None
            self._health = exc.with_traceback(None)
        self._health_at = time.monotonic()

    async def list_containers(
        self, tenant: Tenant, *, all_states: bool, managed_only: bool
    ) -> list[ContainerInfo]:
        """The tenant's runs; everything on the engine (`managed_only` false) only for an
        operator: other containers belong to no tenant."""
        if not managed_only and not tenant.operator:
            raise PolicyRefused(
                "managed_only: false lists every container on the engine, which only an operator "
                "may see (a token of RUNNER_OPERATOR_TOKENS)",
                field="managed_only",
            )
        listing = functools.partial(
            self.backend.list_containers,
            tenant=tenant.label,
            all_states=all_states,
            managed_only=managed_only,
        )
        return await self.call(listing)

    async def list_images(self, tenant: Tenant, *, reference: str | None = None) -> list[ImageInfo]:
        """The images on the engine the tenant may run: allowed, and not another tenant's private
        ones (`runner.private_images`); an operator sees them all."""
        found = await self.call(functools.partial(self.backend.list_images, reference=reference))
        grants = await self.call(self.backend.image_grants)
        return await self.call(runnable_images, found, grants, tenant, self.settings)

    def metrics_for(self, tenant: Tenant) -> bytes:
        """The Prometheus exposition; with tenant names in it, for operators only."""
        if self.settings.metrics_tenants and not tenant.operator:
            raise PolicyRefused(
                "/metrics names every tenant (RUNNER_METRICS_TENANTS), so it needs an operator "
                "token (RUNNER_OPERATOR_TOKENS)",
                field="Authorization",
            )
        return self.metrics.exposition()

    async def pull_image(
        self, request: PullImageRequest, tenant: Tenant, listener: EventSink | None = None
    ) -> PulledImage:
        """Pull an image under the runs' policy; `listener` gets its phases and layer progress
        on the event loop. A pull lasts as long as the registry takes, so it has a thread of
        its own; a caller that goes away stops it at the engine's next progress report."""
        spec = await self.call(build_pull_spec, request, self.settings, tenant)
        control = RunControl(on_event=on_this_loop(listener) if listener else None)
        try:
            found = await own_thread(self.backend.pull_image, spec, control)
        except BaseException:
            control.cancelled.set()
            raise
        log.info("image %r pulled (tenant=%s)", request.image, tenant.name)
        return PulledImage(image=request.image, id=found.id, size=found.size)

    async def _execute(self, spec: RunSpec, control: RunControl) -> Outcome:
        """Run in a worker thread; if this request is cancelled, kill the container and wait
        for the backend's own cleanup before letting the cancellation through."""
        finished = threading.Event()

        def work() -> Outcome:
            try:
                return self.backend.run(spec, control)
            finally:
                finished.set()

        self._in_flight[spec.run_id] = control
        self._idle.clear()
        try:
            return await anyio.to_thread.run_sync(
                work, abandon_on_cancel=True, limiter=self._run_threads
            )
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                control.cancelled.set()
                await self.call(self._cancel_and_wait, spec.run_id, finished)
            raise
        finally:
            del self._in_flight[spec.run_id]
            if not self._in_flight:
                self._idle.set()

    def _cancel_quietly(self, run_id: str) -> None:
        try:
            self.backend.cancel(run_id)
        except RunnerError as exc:
            log.warning("run %s: cancelling failed: %s", run_id, exc.message)

    def _cancel_and_wait(self, run_id: str, finished: threading.Event) -> None:
        self._cancel_quietly(run_id)
        if not finished.wait(CANCEL_CLEANUP_WAIT_SECONDS):
            log.warning("run %s: cleanup outlasted the cancel; the reaper will finish it", run_id)
        log.info("run %s cancelled: the caller went away", run_id)

    async def _reap(self) -> None:
        try:
            removed = await self.call(self.backend.reap_orphans)
        except RunnerError as exc:
            log.warning("reaping leftovers failed: %s", exc.message)
            return
        if removed:
            log.info("reaped %d leftover object(s) of earlier runs", removed)

    async def _renew_lease(self) -> None:
        """In a thread of its own: a lease must not wait behind busy shared worker threads."""
        try:
            await own_thread(self.backend.renew_lease)
        except RunnerError as exc:
            log.warning("renewing this runner's lease failed (retried): %s", exc.message)

    @staticmethod
    async def _every(seconds: float, work: Callable[[], Awaitable[None]]) -> None:
        while True:
            await anyio.sleep(seconds)
            await work()

    @staticmethod
    async def call(function: Callable[..., T], *args: object) -> T:
        """Blocking work (SDK calls, decoding) goes to a worker thread, never the event loop."""
        return await in_worker(function, *args)


@contextlib.asynccontextmanager
async def service_scope(
    settings: Settings,
    make_backend: Callable[[], Backend],
    service: RunnerService | None = None,
) -> AsyncIterator[RunnerService]:
    """The service an app uses: the one given (shared by REST and MCP in `serve`), or its own
    over the backend the app chose, started and stopped with the app."""
    if service is not None:
        yield service
        return
    own = RunnerService(settings, make_backend())
    await own.start()
    try:
        with also_on_signal(own.begin_shutdown):
            yield own
    finally:
        await own.stop()
