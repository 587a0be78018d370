"""Async runs: started by one request, followed, collected or cancelled by later ones.

The backend keeps each run's state (`Backend.launch` and friends), so a restarted runner, or
another replica on the same engine or cluster, answers for it. Only a run's life before its
container exists is kept in this process's memory (`runner.pending`).

Every question names its tenant: a run, its output, its key and its record exist only for the
tenant that started it; for any other the answer is the 404 of a run that never existed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import anyio

from runner.admission import Admission, Ticket
from runner.backend import Backend
from runner.errors import BackendUnavailable, Cancelled, KeptRunsFull, NotFound, RunnerError
from runner.metrics import Metrics
from runner.models import RunRequest, RunResult, new_run_id
from runner.pending import Pending, pending_status, replay
from runner.run_output import STREAMS, missed, read_all, stream_events
from runner.run_status import FINISHED_STATES, RunList, RunLogs, RunStatus
from runner.settings import Settings
from runner.spec import Arriving, RunControl, RunRecord, RunSpec
from runner.tenancy import Tenant
from runner.threads import in_worker, on_this_loop, own_thread
from runner.uploads import Uploads

log = logging.getLogger("oneoff_runner.runs")
CANCEL_WAIT_SECONDS = 120
OUTCOMES = {"succeeded": "success", "failed": "error"}
SHUT_DOWN = "the runner shut down before the run started; it never ran: start it again"

Resolve = Callable[[RunRequest, str, Tenant, Uploads | None], tuple[RunSpec, Arriving | None]]
"""The service's policy step: (request, run id, tenant, content parts still to arrive) to the
backend's instructions and the content parts as they are checked."""


class AsyncRuns:
    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        admission: Admission,
        metrics: Metrics,
        resolve: Resolve,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.admission = admission
        self.metrics = metrics
        self.resolve = resolve
        self._pending: dict[str, Pending] = {}
        self._keys: dict[tuple[str, str], str] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._closing = False
        self._admitting: dict[str, asyncio.Lock] = {}
        """One kept-runs check at a time per tenant, so that its bound holds in this runner."""
        self._starting: dict[str, int] = {}
        """Runs admitted under the bound and not yet accepted, per tenant."""

    async def resume(self) -> None:
        """Watch the runs a previous life of the runner (or another replica) left running, so
        their timeouts hold."""
        for record in await self._find(None, None):
            if record.state == "running":
                self._spawn(self._watch(record.run_id))

    def refuse_new(self) -> None:
        self._closing = True

    async def stop(self, grace: float) -> None:
        """Shut down honestly. Queued runs never start: they leave the queue and their record
        says so. Runs being started get `grace` seconds to start, and are then handed over like
        running runs (their state is in the backend; any runner answers and enforces their
        timeout); past it, they are stopped before they start and say so, or, if they had
        started, their container tells how they went. Running runs are left running."""
        self._closing = True
        pending = list(self._pending.values())
        queued = [run for run in pending if run.state == "queued" and run.task is not None]
        for run in pending:
            run.stopped = True
        for run in queued:
            run.task.cancel()  # type: ignore[union-attr]
        await self._until_started(pending, grace)
        for run in pending:
            if run.spec.run_id in self._pending:
                run.control.cancelled.set()
        await self._until_started(pending, CANCEL_WAIT_SECONDS)
        if queued:
            await asyncio.wait({run.task for run in queued if run.task is not None})
        for run in queued:
            if not run.cancelled:
                await self._record_quietly(run.record("failed", SHUT_DOWN))
        for task in list(self._watchers):
            task.cancel()

    async def _until_started(self, runs: list[Pending], timeout: float) -> None:
        """Until none of `runs` is still queued or starting, or `timeout` has passed."""
        with anyio.move_on_after(timeout):
            for run in runs:
                while run.spec.run_id in self._pending:
                    await run.changed.wait()

    async def until_settled(self) -> None:
        """Until every run this process watches has ended and been counted."""
        await asyncio.gather(*self._watchers, return_exceptions=True)

    # ---- start ----------------------------------------------------------------------------

    async def start(
        self,
        request: RunRequest,
        tenant: Tenant,
        idempotency_key: str | None,
        uploads: Uploads | None = None,
        ticket: Ticket | None = None,
        *,
        evictable: bool = False,
    ) -> RunStatus:
        """Start a run for `tenant`; a key the tenant used before returns that run. `uploads`:
        its content parts still arriving; `ticket`: a queue place reserved before the request
        body was read. `evictable`: once `delivered`, the run may be removed to make room
        under the tenant's kept-runs bound (MCP's runs; never REST's). The request is judged
        first: a repeated key does not make a request it would refuse acceptable."""
        if self._closing:
            raise BackendUnavailable("the runner is shutting down; retry on another replica")
        try:
            resolved = await self._call(self.resolve, request, new_run_id(), tenant, uploads)
            existing = None
            if idempotency_key is not None:
                existing = await self._by_key(tenant, idempotency_key)
        except BaseException:
            if ticket is not None:
                ticket.release()
            raise
        if existing is not None:
            if ticket is not None:
                ticket.release()
            return existing
        ticket = ticket or self.admission.reserve()
        try:
            async with self._kept_place(tenant):
                spec, arriving = resolved
                spec = dataclasses.replace(spec, accepted_at=time.time(), evictable=evictable)
                control = RunControl(uploads=arriving)
                pending = Pending(spec, control, idempotency_key, ticket, tenant)
                self._accept(pending)
        except BaseException:
            ticket.release()
            raise
        return pending_status(pending)

    @contextlib.asynccontextmanager
    async def _kept_place(self, tenant: Tenant) -> AsyncIterator[None]:
        """A place under the tenant's kept-runs bound, held until the run is accepted (then it
        counts as pending) or refused."""
        async with self._admitting.setdefault(tenant.label, asyncio.Lock()):
            await self._within_kept_bound(tenant)
            self._starting[tenant.label] = self._starting.get(tenant.label, 0) + 1
        try:
            yield
        finally:
            self._starting[tenant.label] -= 1

    async def _within_kept_bound(self, tenant: Tenant) -> None:
        """Busy (429) when the tenant keeps `max_kept_runs` async runs already: running ones,
        and finished ones whose result has not expired. At the bound, the oldest finished runs
        whose final result an answer delivered (`delivered`) are removed to make room first.
        Retry-After: when the first of them expires (it may be sooner: a DELETE frees one at
        once)."""
        bound = self.settings.max_kept_runs
        # pending runs first: one whose launch ends while the engine is asked is in one of both
        mine = {run_id for run_id, run in self._pending.items() if run.tenant == tenant}
        kept = await self._find(tenant, None)
        known = mine | {record.run_id for record in kept}
        count = len(known) + self._starting.get(tenant.label, 0)
        evictable = [record for record in kept if record.evictable and record.delivered]
        evictable.sort(key=lambda record: record.finished_at or record.created_at)
        for record in evictable[: max(count - bound + 1, 0)]:
            await self._call(self.backend.forget_run, record.run_id)
            count -= 1
            log.info(
                "run %s removed to make room under max_kept_runs: its result was delivered",
                record.run_id,
                extra={"run_id": record.run_id, "tenant": tenant.name},
            )
        if count < bound:
            return
        ttl, now = self.settings.result_ttl_seconds, time.time()
        ends = [record.finished_at + ttl - now for record in kept if record.finished_at]
        raise KeptRunsFull(
            f"you keep {count} async runs, the operator's bound "
            f"(RUNNER_MAX_KEPT_RUNS: {bound}): running ones, and finished ones until their "
            f"result expires (result_ttl_seconds: {ttl:g}); free one by removing a finished run "
            "(DELETE /runs/{id}, or the MCP tool cancel_run), then start again. A run "
            "run_container started makes room by itself once run_container or wait_run has "
            "answered with its result",
            retry_after=max(1, int(min(ends, default=ttl)) + 1),
        )

    async def delivered(self, tenant: Tenant, run_id: str) -> None:
        """An answer has delivered the run's final result: if it was started `evictable`, it
        may now be removed to make room under the tenant's kept-runs bound, by any runner."""
        await self._call(self.backend.mark_delivered, run_id, tenant.label)

    def _accept(self, pending: Pending) -> None:
        """Keep the run as pending and start it in the background (its ticket freed at its
        end)."""
        run_id, tenant = pending.spec.run_id, pending.tenant
        pending.control.on_event = on_this_loop(pending.add)
        self._pending[run_id] = pending
        if pending.key is not None:
            self._keys[tenant.label, pending.key] = run_id
        pending.task = self._spawn(self._run(pending))
        pending.task.add_done_callback(lambda _: pending.ticket.release())
        extra = {"run_id": run_id, "tenant": tenant.name}
        log.info(
            "run %s accepted: tenant=%s image=%s", run_id, tenant.name, pending.image, extra=extra
        )

    async def _by_key(self, tenant: Tenant, key: str) -> RunStatus | None:
        run_id = self._keys.get((tenant.label, key))
        if run_id is not None and run_id in self._pending:
            return pending_status(self._pending[run_id])
        found = await self._call(
            lambda: self.backend.find_runs(tenant=tenant.label, run_id=None, idempotency_key=key)
        )
        return await self.status(tenant, found[-1].run_id) if found else None

    async def _run(self, pending: Pending) -> None:
        spec = pending.spec
        try:
            async with self.admission.slot(pending.ticket):
                pending.move("pulling")
                await self._call(self.backend.launch, spec, pending.control, pending.key)
                if pending.cancelled:  # while it launched (cancel may have given up waiting)
                    record = pending.record("cancelled")
                    await self._call(self.backend.discard_run, spec.run_id, record)
                    return
                self._forget(pending)
                await self._watch(spec.run_id)
                await self._count(pending.tenant, spec.run_id)
        except RunnerError as exc:
            if pending.stopped and isinstance(exc, Cancelled):
                await self._record_quietly(pending.record("failed", SHUT_DOWN))
            elif pending.cancelled:
                if isinstance(exc, Cancelled):  # it stopped before it ran: nothing of it runs
                    await self._record_quietly(pending.record("cancelled"))
            else:
                log.info("run %s failed to start: %s", spec.run_id, exc.message)
                self.metrics.record(pending.tenant.name, exc.code, {})
                await self._record_quietly(pending.record("failed", exc.message))
        except Exception as exc:  # noqa: BLE001 - a bug of ours: the run still ends, and says so
            self.metrics.record(pending.tenant.name, "internal_error", {})
            await self._failed(spec.run_id, "starting", exc, pending.record("failed"))
        finally:
            if not pending.cancelled:
                self._forget(pending)  # a cancelled run is forgotten once its record is kept

    async def _watch(self, run_id: str) -> None:
        try:
            await own_thread(self.backend.wait_run, run_id)
        except RunnerError as exc:
            log.warning(
                "run %s: watching failed (the reaper enforces its timeout): %s", run_id, exc.message
            )
            return
        except Exception as exc:  # noqa: BLE001 - a bug of ours: the run still ends, and says so
            await self._failed(run_id, "watching", exc)
            return
        log.info("run %s finished", run_id, extra={"run_id": run_id})

    async def _failed(
        self, run_id: str, doing: str, exc: Exception, record: RunRecord | None = None
    ) -> RunRecord | None:
        """After an unexpected error of the runner's own while `doing` something for a run
        (a bug: logged with its traceback), the run is stopped and removed and its record
        (`record`, or the backend's) says `failed`, with a message: no run answers 202 and then
        vanishes. Returns that record (None when the backend has none to start from)."""
        log.error("run %s: internal error while %s", run_id, doing, exc_info=exc)
        if record is None:
            try:
                found = await self._find(None, run_id)
            except RunnerError as again:
                log.warning("run %s: its record could not be read: %s", run_id, again.message)
                return None
            if not found:
                return None
            record = found[-1]
        ended = dataclasses.replace(
            record,
            state="failed",
            finished_at=record.finished_at or time.time(),
            error=f"the runner failed while {doing} the run ({type(exc).__name__}); it was "
            "stopped. This is a bug of the runner: its log has the details",
        )
        try:
            await self._call(self.backend.discard_run, run_id, ended)
        except Exception as again:  # noqa: BLE001 - the first error is the one to report
            log.warning("run %s: removing it after the error failed too: %s", run_id, again)
            await self._record_quietly(ended)
        return ended

    async def _count(self, tenant: Tenant, run_id: str) -> None:
        """The run's outcome in the metrics, named as /run's are."""
        with contextlib.suppress(RunnerError):
            state = (await self.status(tenant, run_id, with_result=False)).state
            self.metrics.record(tenant.name, OUTCOMES.get(state, state), {})

    def _forget(self, pending: Pending) -> None:
        if self._pending.pop(pending.spec.run_id, None) is not None:
            pending.move("running")
        if pending.key is not None:
            self._keys.pop((pending.tenant.label, pending.key), None)

    # ---- answer ---------------------------------------------------------------------------

    async def status(self, tenant: Tenant, run_id: str, *, with_result: bool = True) -> RunStatus:
        pending = self._pending_of(tenant, run_id)
        if pending is not None:
            return pending_status(pending)
        record = await self._find_record(tenant, run_id)
        result = None
        if with_result and record.state in FINISHED_STATES and record.state != "cancelled":
            if record.error is None:
                try:
                    outcome = await self._call(self.backend.collect_run, run_id)
                except RunnerError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a bug of ours: the run says so
                    doing = "collecting the result of"
                    ended = await self._failed(run_id, doing, exc, record)
                    return _status(ended or record, None)
                elapsed = (record.finished_at or time.time()) - record.created_at
                result = outcome.result(run_id, elapsed)
        return _status(record, result)

    async def list_runs(
        self, tenant: Tenant, state: str | None, image: str | None, limit: int
    ) -> RunList:
        statuses = [_status(record, None) for record in await self._find(tenant, None)]
        known = {status.run_id for status in statuses}
        statuses += [
            pending_status(pending)
            for run_id, pending in self._pending.items()
            if run_id not in known and pending.tenant == tenant
        ]
        chosen = [
            item
            for item in statuses
            if (state is None or item.state == state) and (image is None or item.image == image)
        ]
        chosen.sort(key=lambda item: item.created_at, reverse=True)
        return RunList(runs=chosen[:limit])

    async def cancel(self, tenant: Tenant, run_id: str) -> RunStatus:
        """Kill and remove the run; once this answers, its container is gone. The run's record
        is kept before anything that shows the run goes, so nobody sees it vanish meanwhile."""
        pending = self._pending_of(tenant, run_id)
        try:
            if pending is not None:
                await self._stop_pending(pending)
                record = pending.record("cancelled")
            else:
                record = await self._find_record(tenant, run_id)
                if record.state in FINISHED_STATES:
                    return await self.status(tenant, run_id)
                record.state, record.finished_at = "cancelled", time.time()
            await self._call(self.backend.discard_run, run_id, record)
        finally:
            if pending is not None:
                self._forget(pending)
        log.info("run %s cancelled by tenant=%s", run_id, tenant.name, extra={"run_id": run_id})
        return _status(record, None)

    async def remove(self, tenant: Tenant, run_id: str, *, unfinished: bool = False) -> RunStatus:
        """A finished run is removed with all it kept (record, result, files) and is not found
        from then on (the answer is its last status, with its result); any other run is
        cancelled (`cancel`), and removed too when `unfinished` (REST's DELETE)."""
        status = None
        if self._pending_of(tenant, run_id) is None:
            status = await self.status(tenant, run_id)
        if status is None or not status.finished:
            status = await self.cancel(tenant, run_id)
            if not unfinished:
                return status
        await self._call(self.backend.forget_run, run_id)
        log.info("run %s removed by tenant=%s", run_id, tenant.name)
        return status

    async def _stop_pending(self, pending: Pending) -> None:
        """A queued run leaves the queue; a starting one stops at its next step (the pull
        checks between layers) and removes what it made."""
        pending.cancelled = True
        pending.control.cancelled.set()
        pending.move(pending.state)
        if pending.task is None:
            return
        if pending.state == "queued":
            pending.task.cancel()
        await asyncio.wait({pending.task}, timeout=CANCEL_WAIT_SECONDS)

    async def output(
        self, tenant: Tenant, run_id: str, stdout_offset: int, stderr_offset: int
    ) -> RunLogs:
        """Output after the given byte offsets, at most `max_output_bytes` of each stream."""
        status = await self.status(tenant, run_id, with_result=False)
        kept = {"stdout": b"", "stderr": b""}
        if status.state not in ("queued", "pulling"):
            with contextlib.suppress(NotFound):
                kept = await self._call(read_all, self.backend, run_id)
        cap = self.settings.max_output_bytes
        out = kept["stdout"][stdout_offset : stdout_offset + cap]
        err = kept["stderr"][stderr_offset : stderr_offset + cap]
        return RunLogs(
            run_id=run_id,
            state=status.state,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            stdout_offset=stdout_offset + len(out),
            stderr_offset=stderr_offset + len(err),
            finished=status.finished,
        )

    async def events(
        self, tenant: Tenant, run_id: str, *, follow: bool = True
    ) -> AsyncGenerator[tuple[str, str], None]:
        """(kind, text): phase and pull events while it starts (from this replica), its output
        from the first byte as it arrives, then ("exit", the status as JSON). Without `follow`,
        the output so far and the status now."""
        await self.require(tenant, run_id)
        pending = self._pending_of(tenant, run_id)
        if pending is not None and follow:
            async for event in replay(pending):
                yield event
        sent = dict.fromkeys(STREAMS, 0)
        if pending is None or follow:
            with contextlib.suppress(NotFound):
                stream = await self._call(lambda: self.backend.run_output(run_id, follow=follow))
                async with contextlib.aclosing(stream_events(stream)) as output:
                    async for kind, text in output:
                        sent[kind] += len(text)
                        yield kind, text
        if follow:
            with contextlib.suppress(RunnerError):
                await own_thread(self.backend.wait_run, run_id)
        status = await self._exit_status(tenant, run_id)
        if follow:
            for event in missed(status.result, sent):
                yield event
        yield "exit", status.model_dump_json()

    async def _exit_status(self, tenant: Tenant, run_id: str) -> RunStatus:
        """The status a stream ends with. A result that cannot be read (returned content over a
        limit, or lost) is no reason to end it without one: `error` says why, as GET /runs/{id}
        answers."""
        try:
            return await self.status(tenant, run_id)
        except RunnerError as exc:
            found = await self.status(tenant, run_id, with_result=False)
            return found.model_copy(update={"error": f"no result: {exc.message}"})

    async def wait(self, tenant: Tenant, run_id: str) -> RunStatus:
        """The run's status once it has finished (with its result)."""
        await self.require(tenant, run_id)
        pending = self._pending_of(tenant, run_id)
        if pending is not None:
            async for _ in replay(pending):
                pass
        with contextlib.suppress(NotFound):
            await own_thread(self.backend.wait_run, run_id)
        return await self.status(tenant, run_id)

    async def settle(self, run_id: str, timeout: float) -> None:
        """Until the end of a run that has stopped is kept (on Docker: its container gone, its
        volumes free), at most `timeout` seconds."""
        await own_thread(self.backend.settle_run, run_id, timeout)

    async def until_launched(self, run_id: str) -> None:
        """Until the run has left `queued` and `pulling`: started, or failed to."""
        while (pending := self._pending.get(run_id)) is not None:
            await pending.changed.wait()

    async def require(self, tenant: Tenant, run_id: str) -> None:
        """Raise NotFound now (before a stream starts) for a run the tenant does not have."""
        if self._pending_of(tenant, run_id) is None:
            await self._find_record(tenant, run_id)

    # ---- helpers --------------------------------------------------------------------------

    def _pending_of(self, tenant: Tenant, run_id: str) -> Pending | None:
        pending = self._pending.get(run_id)
        return pending if pending is not None and pending.tenant == tenant else None

    async def _find_record(self, tenant: Tenant, run_id: str) -> RunRecord:
        found = await self._find(tenant, run_id)
        if not found:
            ttl = self.settings.result_ttl_seconds
            raise NotFound(
                f"run_id: no run {run_id!r}: it never existed here, or it finished more than "
                f"result_ttl_seconds ({ttl:g}) ago and was removed",
                field="run_id",
            )
        return found[-1]

    async def _find(self, tenant: Tenant | None, run_id: str | None) -> list[RunRecord]:
        """The tenant's runs, or (None) every tenant's: only the runner itself asks for those."""
        label = None if tenant is None else tenant.label
        found: list[RunRecord] = await self._call(
            lambda: self.backend.find_runs(tenant=label, run_id=run_id, idempotency_key=None)
        )
        return found

    async def _record_quietly(self, record: RunRecord) -> None:
        try:
            await self._call(self.backend.record_run, record)
        except RunnerError as exc:
            log.warning("run %s: its end could not be recorded: %s", record.run_id, exc.message)

    def _spawn(self, work: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        return task

    async def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        return await in_worker(function, *args)


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _status(record: RunRecord, result: RunResult | None) -> RunStatus:
    return RunStatus(
        run_id=record.run_id,
        state=record.state,
        image=record.image,
        created_at=datetime.fromtimestamp(record.created_at, UTC),
        started_at=_time(record.started_at),
        finished_at=_time(record.finished_at),
        error=record.error,
        result=result,
    )
