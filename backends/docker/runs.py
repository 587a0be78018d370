"""Async runs on Docker: containers that outlive the request that started them, and the runner.

Everything a later question needs is kept on the engine, so a restarted runner, or another one
on the same engine, answers for a run. While it runs, its container's labels carry what the
request asked (timeout, disk limit, output caps, response paths, idempotency key), its state how
it goes, and the `local` log driver its output. When it ends, the runner watching it (`watchers`)
keeps its result without its container (`results`: exit, flags, output up to the caps, returned
paths) and a record (an empty volume whose labels hold its state), then removes the container and
its writable layer: a finished run holds no more disk than its result. A run that ends without a
container (cancelled, or failed before it started) leaves a record only.

A run that fits a warm container (`pool`) takes one instead of a new container: that
container's labels were fixed before the run, so the run's are on its claim, and every path
here sees the container through the claim (`_container`, `_inspect`, `find`).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from backends.docker.containers import Containers
from backends.docker.errors import engine_errors
from backends.docker.output import Captured, read_frames
from backends.docker.pool import Pool, WarmLost, claim_name
from backends.docker.results import KeptResults
from backends.docker.run_state import (
    ENDED,
    STOPPED,
    KeptOutput,
    OutputStream,
    claimed,
    engine_logs,
    inspected_as,
    is_async_claim,
    present,
    record_of,
    stopped_for,
)
from backends.docker.stdin import StdinFeed
from backends.docker.watchers import Watchers
from backends.labels import (
    ASYNC_ROLE,
    CONTAINER,
    CREATED,
    DELIVERED_ROLE,
    EVICTABLE,
    INSTANCE,
    KEY,
    OUTPUT,
    RECORD,
    RECORD_ROLE,
    RESULT_ROLE,
    ROLE,
    RUN_ID,
    SCRATCH,
    TENANT,
    TIMEOUT_AT,
    TTL,
    key_label,
    readable,
    run_labels,
    selector,
)
from backends.leases import abandoned, past_deadline
from backends.records import (
    collect_label,
    latest_per_run,
    record_label,
    record_labels,
    stored_collect,
    stored_record,
)
from runner.archive_streams import released
from runner.errors import BackendUnavailable, Conflict, NotFound, RunnerError
from runner.spec import Outcome, RunControl, RunRecord, RunSpec

SETTLE_SECONDS = 60
REMEMBERED_CLAIMS = 4096
NEVER_STARTED = "the runner that accepted the run stopped before it started; start it again"


def delivered_name(run_id: str) -> str:
    return f"oneoff-{run_id}-delivered"


class DetachedRuns:
    def __init__(self, containers: Containers, pool: Pool) -> None:
        self.containers = containers
        self.pool = pool
        self.settings = containers.settings
        self._feeds: dict[str, StdinFeed] = {}
        """Input still being written, by run: stopped when the run is seen to end (the engine
        keeps an input attach open after its container stopped)."""
        self.results = KeptResults(
            lambda: containers.api, containers.content, containers.settings.max_archive_members
        )
        self.watchers = Watchers(self._follow)
        self._discarding: set[str] = set()
        """Runs being cancelled or removed here: their end is not kept as a result."""
        self._claims: dict[str, dict[str, str]] = {}
        """Warm async runs' claims' labels, by run, as read (`_container`)."""
        self._claims_lock = threading.Lock()

    def launch(self, spec: RunSpec, control: RunControl, idempotency_key: str | None) -> None:
        """Pull, prepare content, create and start; returns once the container runs."""
        containers = self.containers
        containers.ensure_image(spec, control)
        labels = self._labels(spec, idempotency_key)
        if self._launch_warm(spec, control, labels):
            return
        container, volume = containers.prepare(spec, control, labels, {}, containers.kept_log())
        feed: StdinFeed | None = None
        try:
            feed = containers.feed_stdin(spec, container)
            containers.start(spec, control, container)
            if feed is not None:
                self._feeds[spec.run_id] = feed
        except BaseException:
            if feed is not None:
                feed.stop()
            containers.remove(container, volume)
            raise

    def _launch_warm(self, spec: RunSpec, control: RunControl, labels: dict[str, str]) -> bool:
        """Start the run in a warm container when it fits one (`pool`): its claim carries the
        run's labels; it ends, and is read, kept and removed, as a cold one."""
        if control.cancelled.is_set():
            return False  # the cold path says so, making nothing
        taken = self.pool.take(spec, control, labels)
        if taken is None:
            return False
        try:
            taken.go_detached(spec.stdin, spec.timeout_seconds)
            control.emit("phase", "running")  # as `Containers.start` says it on the cold path
        except WarmLost:
            taken.stop()  # its reader closes the attach
            self.containers.remove(taken.container, claim_name(spec.run_id))
            return False  # the command did not start there: the run goes cold
        self._remember(taken.labels)
        return True

    def _labels(self, spec: RunSpec, idempotency_key: str | None) -> dict[str, str]:
        """The run's labels; the owner's only matters until it starts (a launch that died with
        its runner is removed by whoever sees the lease gone), after which any runner answers."""
        now = time.time()
        ttl = self.settings.result_ttl_seconds
        lasts = spec.timeout_seconds + ttl
        labels = {
            **self.containers.labels(spec.run_id, ASYNC_ROLE, lasts, spec.tenant),
            CREATED: repr(spec.accepted_at or now),
            TIMEOUT_AT: repr(now + spec.timeout_seconds),
            TTL: repr(ttl),
            OUTPUT: collect_label(spec.collecting),
            SCRATCH: str(spec.scratch_bytes),
        }
        if idempotency_key is not None:
            labels[KEY] = key_label(idempotency_key)
        if spec.evictable:
            labels[EVICTABLE] = "true"
        return labels

    def wait(self, run_id: str) -> None:
        """Block until the run has ended and its end is kept (`_follow`, in this runner's one
        watcher of the run)."""
        self.watchers.wait(run_id)

    def _follow(self, run_id: str, stopped: Callable[[], None]) -> None:
        """Wait for the run to stop, sampling its disk meanwhile and killing it at its deadline;
        then drop its unread input, say it `stopped`, keep its end and remove its container."""
        container = self._container(run_id)
        if container is None:
            return
        reason = None
        try:
            if self._status(container) == "running":
                reason = self._until_stopped(container)
        finally:
            self._stop_feed(run_id)
        stopped()
        if not self.watchers.closing:
            self.keep(run_id, reason)

    def _stop_feed(self, run_id: str) -> None:
        feed = self._feeds.pop(run_id, None)
        if feed is not None:
            feed.stop()

    def _until_stopped(self, container: dict[str, Any]) -> str | None:
        """Until the container stops; why the runner stopped it for its disk, if it did."""
        labels, run_id = container["Labels"], container["Labels"][RUN_ID]
        limit = int(labels.get(SCRATCH, self.settings.default_scratch_bytes))
        scratch = self.containers.watch_scratch(
            container["Id"], limit, lambda kind: self._stop_for_disk(run_id, container["Id"], kind)
        )
        try:
            self._wait(container)
        finally:
            reason = scratch.stop()
        return reason

    def _stop_for_disk(self, run_id: str, container: str, kind: str) -> None:
        """Mark the container (its name says why it died, to any runner), then kill it."""
        with contextlib.suppress(RunnerError), engine_errors("marking the run"):
            self.containers.api.rename(container, f"oneoff-{run_id}{STOPPED}{kind}")
        self.containers.kill(container)

    def _wait(self, container: dict[str, Any]) -> None:
        remaining = float(container["Labels"][TIMEOUT_AT]) - time.time()
        try:
            if remaining > 0:
                with engine_errors("waiting for the container"):
                    self.containers.streams.wait(container["Id"], timeout=remaining)  # type: ignore[arg-type]
                return
        except NotFound:
            return
        except BackendUnavailable:
            if float(container["Labels"][TIMEOUT_AT]) > time.time():
                raise
        self.containers.kill(container["Id"])

    def keep(self, run_id: str, reason: str | None = None) -> None:
        """Keep a finished run's end (its result, then its record) and remove its container and
        writable layer. Any runner may do it, more than once: the first result kept counts, and
        a run found kept already is only recorded and removed."""
        container = self._container(run_id)
        inspected = None if container is None else self._inspect(container)
        if container is None or inspected is None or inspected["State"]["Status"] not in ENDED:
            return
        if run_id in self._discarding:
            return  # cancelled: its end is the cancel's to record
        if self._recorded(run_id):  # kept by another runner, or cancelled by one
            self._remove(run_id, container)
            return
        record = record_of(inspected)
        labels = container["Labels"]
        left = float(labels[TTL]) - (time.time() - (record.finished_at or time.time()))
        if left <= 0:
            self.discard(run_id)  # its result expired while nobody kept it
            return
        record.scratch_exceeded = record.scratch_exceeded or reason is not None
        kept: Outcome | RunnerError
        try:
            kept = self._collect_container(container, record, reason)
        except NotFound:
            return  # removed meanwhile: another runner kept it
        except RunnerError as exc:
            kept = exc
        instance = labels.get(INSTANCE, self.settings.instance_id)  # the runner that ran it
        result_labels = run_labels(run_id, instance, RESULT_ROLE, record.tenant, left)
        if not self.results.keep(run_id, result_labels, kept) and not self.results.whole(run_id):
            return  # another runner is keeping it now
        self.record(record, instance, left, labels.get(KEY))
        self._remove(run_id, container)

    def _recorded(self, run_id: str) -> bool:
        with engine_errors("looking for the run's record"):
            found = self.containers.api.volumes(filters={"name": f"oneoff-{run_id}-record"})
        return any(item["Name"] == f"oneoff-{run_id}-record" for item in found.get("Volumes") or [])

    def find(
        self, tenant: str | None, run_id: str | None, idempotency_key: str | None
    ) -> list[RunRecord]:
        label = selector(tenant, run_id, idempotency_key)
        api = self.containers.api
        with engine_errors("listing runs"):
            containers = api.containers(
                all=True, filters={"label": [*label, f"{ROLE}={ASYNC_ROLE}"]}
            )
            # records, warm runs' claims and delivered marks in one listing (label filters
            # cannot say "or")
            found = api.volumes(filters={"label": label}).get("Volumes") or []
            claims = (item.get("Labels") or {} for item in found)
            warm, went = self._claimed_all([kept for kept in claims if is_async_claim(kept)])
            inspected = [self._inspect(item) for item in containers + warm]
            if went or not all(present(item) for item in inspected):
                # a run's container went (or is going) since it was listed: its record, made
                # before that, is listed now
                found = api.volumes(filters={"label": label}).get("Volumes") or []
            records = [self._readable(item) for item in inspected if present(item)]
        marked = set()
        for kept in (item.get("Labels") or {} for item in found):
            if kept.get(ROLE) == RECORD_ROLE:
                records.append(stored_record(kept.get(RECORD), kept))
            elif kept.get(ROLE) == DELIVERED_ROLE:
                marked.add(kept.get(RUN_ID))
        chosen = latest_per_run([record for record in records if record is not None])
        for record in chosen:
            record.delivered = record.run_id in marked
        return chosen

    def _readable(self, inspected: dict[str, Any]) -> RunRecord | None:
        return readable(f"container {inspected['Id'][:12]}", lambda: record_of(inspected))

    def output(self, run_id: str, *, follow: bool) -> OutputStream | KeptOutput:
        """From the engine's log while the run has its container, else from its kept result
        (the engine answers 409 for the log of a container being removed: its end is kept, or,
        for a run being discarded, nothing is: it has no output any more)."""
        try:
            return self._logs(run_id, follow=follow)
        except (NotFound, Conflict) as exc:
            kept = self.results.output(run_id, self.settings.max_output_bytes)
            if kept is None and isinstance(exc, NotFound):
                raise
            return KeptOutput(kept or [])

    def _logs(self, run_id: str, *, follow: bool) -> OutputStream:
        container = self._require(run_id)
        client = self.containers.streams if follow else self.containers.api
        return engine_logs(client, container, follow=follow)

    def collect(self, run_id: str) -> Outcome:
        """The finished run's result: as kept, or from its stopped container not kept yet."""
        kept = self.results.outcome(run_id, self._result_limit())
        if kept is not None:
            return kept
        try:
            container = self._require(run_id)
            inspected = self._inspect(container)
            if inspected is None:
                raise _gone(run_id)
            return self._collect_container(container, record_of(inspected))
        except RunnerError:
            # kept meanwhile: the result is kept before the container goes (the engine answers
            # 409 for the log of a container being removed, as in `output`, and Docker 29 may
            # fail the archive of one with a 500)
            kept = self.results.outcome(run_id, self._result_limit())
            if kept is None:
                raise
            return kept

    def _result_limit(self) -> int:
        settings = self.settings
        return 2 * settings.max_output_bytes + settings.max_response_bytes

    def _collect_container(
        self, container: dict[str, Any], record: RunRecord, stopped: str | None = None
    ) -> Outcome:
        """The first `max_output` bytes of each stream, and the `response: true` paths, read
        from the run's stopped container; `stopped`: why this runner stopped it, if it did."""
        labels = container["Labels"]
        collect = stored_collect(labels[OUTPUT])
        kind = stopped_for((container.get("Names") or [""])[0]) or stopped
        limit = int(labels.get(SCRATCH, self.settings.default_scratch_bytes))
        stream = self._logs(record.run_id, follow=False)
        pairs = ((data, None) if kind == "stdout" else (None, data) for kind, data in stream)
        captured: Captured = read_frames(pairs, collect.max_output_bytes, None, pairs.close)
        returned, unreturned = self.containers.returned.returned(collect, container["Id"])
        return Outcome(
            exit_code=record.exit_code,
            stdout=bytes(captured.kept["stdout"]),
            stderr=bytes(captured.kept["stderr"]),
            stdout_truncated=captured.cut["stdout"],
            stderr_truncated=captured.cut["stderr"],
            timed_out=record.timed_out,
            oom_killed=record.oom_killed,
            scratch_exceeded=self.containers.scratch_message(kind, limit),
            returned=returned,
            unreturned=unreturned,
        )

    def file(self, run_id: str, path: str) -> tuple[str, Iterator[bytes]]:
        """A finished run's `response: true` path: from its kept result, or streamed out of its
        stopped container not kept yet."""
        kept = self.results.file(run_id, path, self.settings.max_response_bytes)
        if kept is not None:
            return kept
        container = self._require(run_id)
        status = self._status(container)
        if status is None:  # gone since it was listed: kept and removed meanwhile, or removed
            kept = self.results.file(run_id, path, self.settings.max_response_bytes)
            if kept is None:
                raise _gone(run_id)
            return kept
        if status not in ENDED:
            raise Conflict(
                f"path: run {run_id!r} is still {status}; its files can be read "
                "once it has finished",
                field="path",
            )
        collect = stored_collect(container["Labels"][OUTPUT])
        mount = next((mount for mount in collect.returned if mount.path == path), None)
        if mount is None:
            returned = ", ".join(mount.path for mount in collect.returned) or "nothing"
            raise NotFound(
                f"path: {path!r} is not a `response: true` path of run {run_id!r} (it returns: "
                f"{returned})",
                field="path",
            )
        chunks = self.containers.returned.stream(container["Id"], mount, collect.max_response_bytes)
        return mount.kind, self._or_kept(run_id, path, chunks)

    def _or_kept(self, run_id: str, path: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """`chunks`, or, when reading the container failed before the first of them and its
        end was kept meanwhile, the kept path: a container being removed is gone (NotFound), or
        not yet, its layer already released (Docker 29: "RWLayer ... is unexpectedly nil")."""
        started = False
        try:
            with released(chunks):
                for chunk in chunks:
                    started = True
                    yield chunk
        except RunnerError:
            kept = None if started else self.results.file(run_id, path, self._result_limit())
            if kept is None:
                raise
            yield from kept[1]

    def discard(
        self, run_id: str, record: RunRecord | None = None, instance: str | None = None
    ) -> None:
        """Keep `record`, kill the run's container, then remove the container and volume, if
        they are still there. The record comes first: it outranks the container, so the run
        never looks gone meanwhile, and another runner's reaper that sees the killed container
        finds the run recorded and only removes it (it would keep the kill as the run's end)."""
        self._stop_feed(run_id)
        self._discarding.add(run_id)
        try:
            if record is not None:
                self.record(record, instance)
            container = self._container(run_id)
            if container is not None:
                self.containers.kill(container["Id"])
            self._remove(run_id, container)
        finally:
            self._discarding.discard(run_id)

    def record(
        self,
        record: RunRecord,
        instance: str | None = None,
        ttl: float | None = None,
        key: str | None = None,
    ) -> None:
        """Keep a run's end where a restarted runner finds it, for `ttl` (by default the
        result's TTL); labelled with the runner that ran it (`instance`, by default this one)
        and, when it was started with one, its hashed idempotency `key`."""
        settings = self.settings
        ttl = settings.result_ttl_seconds if ttl is None else ttl
        labels = record_labels(record, instance or settings.instance_id, ttl)
        labels[RECORD] = record_label(record)
        if key is not None:
            labels[KEY] = key
        with engine_errors("recording the run's end"):
            self.containers.api.create_volume(f"oneoff-{record.run_id}-record", labels=labels)

    def mark_delivered(self, run_id: str, tenant: str) -> None:
        """A volume `oneoff-<run>-delivered` (labels cannot change): gone with the run, or
        past the result's TTL (it has no owner, so it outlives the runner that made it). A
        mark made before (by any runner) stands; a volume of that name that is no mark of this
        run is refused (callers cannot take the name: `RESERVED_VOLUME_NAMES`)."""
        labels = run_labels(
            run_id,
            self.settings.instance_id,
            DELIVERED_ROLE,
            tenant,
            self.settings.result_ttl_seconds,
        )
        with engine_errors("marking the run's result delivered"):
            made = self.containers.api.create_volume(delivered_name(run_id), labels=labels)
        found = made.get("Labels") or {}
        if (found.get(ROLE), found.get(RUN_ID)) != (DELIVERED_ROLE, run_id):
            raise RunnerError(f"a volume named {delivered_name(run_id)!r} is not this runner's")

    def forget(self, run_id: str) -> None:
        """Remove a finished run and all it kept: its record first (from then on it is not
        found), then its result, and its container if it was not kept yet."""
        self._discarding.add(run_id)
        try:
            self.watchers.settle(run_id, SETTLE_SECONDS)  # its end, being kept here, is kept
            container = self._container(run_id)
            self.containers.remove(None, f"oneoff-{run_id}-record")
            self.results.remove(run_id)
            self._remove(run_id, container)
            self.containers.remove(None, delivered_name(run_id))
        finally:
            self._discarding.discard(run_id)

    def expire(self, found: list[dict[str, Any]], live: set[str]) -> int:
        """Of the async runs' containers `found`: watch runs nobody watches (their runner is
        gone, or they are past their timeout): the watcher samples them, kills them at their
        deadline, keeps their end; keep the end of finished runs not kept yet; and remove runs
        whose launch died with its runner (created, never started; their record says so).
        Returns how many runs were removed."""
        removed = 0
        now = time.time()
        for item in found:
            expire = functools.partial(self._expired, item, live, now)
            removed += bool(readable(f"container {item['Id'][:12]}", expire))
        return removed

    def _expired(self, item: dict[str, Any], live: set[str], now: float) -> bool:
        labels = item["Labels"]
        if item["State"] == "running":
            if float(labels[TIMEOUT_AT]) < now or abandoned(labels, live):
                self.watchers.start(labels[RUN_ID])
        elif item["State"] == "created" and self._launch_died(labels, live, now):
            self.abandon(labels[RUN_ID], item)
            return True
        elif item["State"] in ENDED:
            self.watchers.start(labels[RUN_ID])  # keeps its end, or removes it if expired
        return False

    @staticmethod
    def _launch_died(labels: dict[str, str], live: set[str], now: float) -> bool:
        return abandoned(labels, live) or past_deadline(labels, now)

    def abandon(self, run_id: str, container: dict[str, Any]) -> None:
        """A run that never started: recorded as such, then removed. The record comes first (it
        outranks the container when both are there), so a run being reaped by another runner
        never looks gone to a caller or to this runner's reaper."""
        labels = container["Labels"]
        record = RunRecord(
            run_id=run_id,
            state="failed",
            image=container.get("Image", ""),
            created_at=float(labels[CREATED]),
            finished_at=time.time(),
            error=NEVER_STARTED,
            evictable=labels.get(EVICTABLE) == "true",
        )
        if TENANT in labels:
            record.tenant = labels[TENANT]
        self.discard(run_id, record, labels.get(INSTANCE))

    def _inspect(self, container: dict[str, Any]) -> dict[str, Any] | None:
        """The run's container as listed, inspected (with its run's labels: `claimed`), or
        None when it went since it was listed (another runner on the engine removed it)."""
        try:
            with engine_errors("inspecting the run's container"):
                inspected: dict[str, Any] = self.containers.api.inspect_container(container["Id"])
        except NotFound:
            return None
        return (
            inspected_as(container, inspected) if is_async_claim(container["Labels"]) else inspected
        )

    def _status(self, container: dict[str, Any]) -> str | None:
        """The container's state as inspecting it tells (None once it is gone). Not the
        listing's: Docker 29 lists a container `running` for a moment after its wait returned."""
        inspected = self._inspect(container)
        return None if inspected is None else str(inspected["State"]["Status"])

    def _container(self, run_id: str) -> dict[str, Any] | None:
        """The run's container as listed: its own, or the warm container its claim names (a
        claim never changes: once read, it is remembered, and its container is one listing
        away, as a cold run's is)."""
        with self._claims_lock:
            remembered = self._claims.get(run_id)
        if remembered is not None and (warm := self._claimed(remembered)) is not None:
            return warm
        filters = {"label": [f"{RUN_ID}={run_id}", f"{ROLE}={ASYNC_ROLE}"]}
        with engine_errors("finding the run's container"):
            found: list[dict[str, Any]] = self.containers.api.containers(all=True, filters=filters)
            if found:
                return found[0]  # its own (after a warm take that did not start: cold)
            listed = self.containers.api.volumes(filters={"name": claim_name(run_id)})
        named = (item for item in listed.get("Volumes") or [] if item["Name"] == claim_name(run_id))
        claim = next((item.get("Labels") or {} for item in named), None)
        if claim is None or not is_async_claim(claim):
            return None
        return self._claimed(claim)

    def _claimed(self, claim: dict[str, str]) -> dict[str, Any] | None:
        """The warm container an async run's `claim` names, seen as the run's (`claimed`)."""
        found, _ = self._claimed_all([claim])
        return found[0] if found else None

    def _claimed_all(self, claims: list[dict[str, str]]) -> tuple[list[dict[str, Any]], bool]:
        """The warm containers these async runs' claims name, seen as the runs' (`claimed`),
        in one listing; and whether one of them is gone (its claim is then not remembered)."""
        if not claims:
            return [], False
        ids = [claim[CONTAINER] for claim in claims]
        with engine_errors("finding the runs' containers"):
            listed = self.containers.api.containers(all=True, filters={"id": ids})
        by_id = {item["Id"]: item for item in listed}
        taken = [claim for claim in claims if claim[CONTAINER] in by_id]
        for claim in claims:
            if claim[CONTAINER] in by_id:
                self._remember(claim)
            else:
                self._forget_claim(claim[RUN_ID])
        return [claimed(by_id[claim[CONTAINER]], claim) for claim in taken], len(taken) < len(ids)

    def _remember(self, claim: dict[str, str]) -> None:
        """Keep a warm run's claim's labels (they never change), up to `REMEMBERED_CLAIMS`."""
        with self._claims_lock:
            if claim[RUN_ID] not in self._claims:
                while len(self._claims) >= REMEMBERED_CLAIMS:
                    del self._claims[next(iter(self._claims))]
                self._claims[claim[RUN_ID]] = claim

    def _forget_claim(self, run_id: str) -> None:
        with self._claims_lock:
            self._claims.pop(run_id, None)

    def _remove(self, run_id: str, container: dict[str, Any] | None) -> None:
        """The run's container and its run volume, or its claim (a warm container's)."""
        warm = container is not None and is_async_claim(container["Labels"])
        volume = claim_name(run_id) if warm else f"oneoff-{run_id}"
        self.containers.remove(container["Id"] if container else None, volume)
        if container is None:  # a claim whose warm container went first goes too
            self.containers.remove(None, claim_name(run_id))
        self._forget_claim(run_id)

    def _require(self, run_id: str) -> dict[str, Any]:
        container = self._container(run_id)
        if container is None:
            raise _gone(run_id)
        return container


def _gone(run_id: str) -> NotFound:
    return NotFound(
        f"run {run_id!r} has no container: it was cancelled, failed to start, or its result "
        "expired",
        field="run_id",
    )
