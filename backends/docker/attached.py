"""A synchronous run, from its prepared container to its answer: attached to its output before
it starts, its end known from the engine's event stream (`exits`, with `wait` behind it), its
output, state and returned paths collected, and its removal left to the background."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

from backends.docker import sockets
from backends.docker.containers import Containers
from backends.docker.errors import engine_errors
from backends.docker.exits import Exits, Watch
from backends.docker.output import Captured, read_frames
from backends.docker.pool import Pool, Taken, WarmLost
from backends.docker.scratch import ScratchWatch
from backends.labels import RUN_ROLE
from runner.errors import BackendUnavailable, Cancelled
from runner.spec import Outcome, RunControl, RunSpec, timed

OUTPUT_GRACE_SECONDS = 30
SIGKILLED = 137
RECHECK_SECONDS = 5.0


class Ended(NamedTuple):
    """How a run's command ended: its exit code, whether its timeout killed it, and why the
    scratch watch stopped it (None: it did not)."""

    exit_code: int | None
    timed_out: bool
    stopped_for: str | None


class AttachedRuns:
    def __init__(self, containers: Containers, pool: Pool) -> None:
        self.containers = containers
        self.pool = pool
        self.exits = Exits(lambda: containers.streams, containers.lease.owner)
        self._readers = ThreadPoolExecutor(
            max_workers=containers.settings.max_concurrent_runs + 4,
            thread_name_prefix="oneoff-output",
        )

    def close(self) -> None:
        self.exits.close()
        self._readers.shutdown(wait=False, cancel_futures=True)

    def run(self, spec: RunSpec, control: RunControl) -> Outcome:
        containers, phases = self.containers, dict[str, float]()
        with timed(phases, "pull"):
            containers.ensure_image(spec, control)
        took: dict[str, float] = {}
        with timed(took, "warm"):
            taken = self.pool.take(spec, control)
        if taken is not None:
            try:
                return self._run_warm(spec, control, taken, phases | took)
            except WarmLost:
                pass  # the command did not start there: the run goes cold
        labels = containers.labels(spec.run_id, RUN_ROLE, spec.timeout_seconds, spec.tenant)
        container, volume = containers.prepare(spec, control, labels, phases)
        try:
            with timed(phases, "run"):
                output = self._capture(spec, control, container)
                watch = self.exits.watch(container)
                start = functools.partial(containers.start, spec, control, container)
                ended = self._to_end(spec, control, container, watch, start)
            with timed(phases, "collect"):
                control.emit("phase", "collecting output")
                outcome = self._collect(spec, control, container, ended, output, watch)
        except BaseException:
            with timed(phases, "cleanup"):
                containers.remove(container, volume)
            raise
        if any(mount.kind == "volume" for mount in spec.mounts):
            with timed(phases, "cleanup"):  # its named volumes are free when the answer comes
                containers.remove(container, volume)
        else:
            containers.remove_later(container, volume)  # the caller has all it needs: answer now
        outcome.phases = phases
        return outcome

    def _run_warm(
        self, spec: RunSpec, control: RunControl, taken: Taken, phases: dict[str, float]
    ) -> Outcome:
        """A run in a pool container (`pool`): the same steps as a cold run from its start on;
        the command's clock starts when its line is written."""
        container, finished = taken.container, False
        output: Future[Captured] | None = None
        try:
            with timed(phases, "run"):
                cap = spec.max_output_bytes
                output = self._readers.submit(
                    read_frames, taken.frames(), cap, control.on_event, taken.stop
                )
                watch = self.exits.watch(container)

                def begin() -> float:
                    if control.cancelled.is_set():
                        raise Cancelled("the run was cancelled before it started")
                    started = time.monotonic()
                    taken.go(spec.stdin)
                    control.emit("phase", "running")
                    taken.started(spec.timeout_seconds)
                    return started

                ended = self._to_end(spec, control, container, watch, begin)
            with timed(phases, "collect"):
                control.emit("phase", "collecting output")
                outcome = self._collect(spec, control, container, ended, output, watch)
            finished = True
        finally:
            self.pool.finish(spec.run_id, taken, later=finished, reader=output)
        outcome.phases = phases
        return outcome

    def _capture(self, spec: RunSpec, control: RunControl, container: str) -> Future[Captured]:
        """Attach before the start, so nothing is missed, and read both streams in a worker;
        the run's input, if any, is written meanwhile through its own attach (`stdin`).

        The engine keeps no log of a run (log driver none): output cannot fill its disk, and
        nothing is read twice. What passes the cap is read and dropped, so the container never
        blocks on a full pipe; what is kept is forwarded to a listener as it arrives.
        """
        feed = self.containers.feed_stdin(spec, container)
        try:
            with engine_errors("attaching to the container"):
                frames = self.containers.streams.attach(
                    container, stdout=True, stderr=True, stream=True, logs=False, demux=True
                )
        except BaseException:
            if feed is not None:
                feed.stop()
            raise
        response_close = sockets.attach_response(frames).close

        def close() -> None:  # the output ended: so did the run, and any input it left
            response_close()
            if feed is not None:
                feed.stop()

        cap = spec.max_output_bytes
        return self._readers.submit(read_frames, frames, cap, control.on_event, close)

    def _to_end(
        self,
        spec: RunSpec,
        control: RunControl,
        container: str,
        watch: Watch | None,
        begin: Callable[[], float | None],
    ) -> Ended:
        """Start the command (`begin` returns when its clock started; None: now), hold its
        writable layer to its scratch limit, and wait for its end (`_wait`); with why the
        scratch watch stopped it, if it did."""
        scratch: ScratchWatch | None = None
        stopped_for: str | None = None
        try:
            started = begin()
            scratch = self.containers.watch_scratch(
                container, spec.scratch_bytes, lambda _: self.containers.kill(container)
            )
            exit_code, timed_out = self._wait(spec, control, container, watch, started)
        finally:
            self.exits.forget(container)
            if scratch is not None:
                stopped_for = scratch.stop()
        return Ended(exit_code, timed_out, stopped_for)

    def _wait(
        self,
        spec: RunSpec,
        control: RunControl,
        container: str,
        watch: Watch | None,
        started: float | None = None,
    ) -> tuple[int | None, bool]:
        """Wait until exit or the deadline (the timeout from `started`, by default now);
        returns (exit code, timed out). The event stream tells first (`exits`); without it,
        `wait`.

        `wait(timeout=)` is an HTTP read timeout, not a deadline: on expiry we kill, then wait
        again for the exit status.
        """
        api, started = self.containers.api, started or time.monotonic()
        if watch is not None and self._ended(watch, container, started + spec.timeout_seconds):
            return watch.code, False
        left = spec.timeout_seconds - (time.monotonic() - started)
        try:
            if left > 0:
                with engine_errors("waiting for the container"):
                    status = api.wait(container, timeout=left)  # type: ignore[arg-type]
                return status.get("StatusCode"), False
        except BackendUnavailable:
            if time.monotonic() - started < spec.timeout_seconds:
                raise
        control.emit("phase", f"timed out after {spec.timeout_seconds:g}s: killing")
        self.containers.kill(container)
        with engine_errors("waiting for the killed container"):
            status = api.wait(container, timeout=30)
        return status.get("StatusCode"), True

    def _ended(self, watch: Watch, container: str, deadline: float) -> bool:
        """Whether the event stream told the run's end by `deadline` (monotonic). Every few
        seconds the container's state is asked too, so that an end the stream missed costs no
        more."""
        while (left := deadline - time.monotonic()) > 0:
            if watch.ended.wait(min(left, RECHECK_SECONDS)):
                return not watch.lost
            with engine_errors("inspecting the container"):
                if not self.containers.api.inspect_container(container)["State"]["Running"]:
                    return False  # ended unseen: `wait` tells how
        return False

    def _collect(
        self,
        spec: RunSpec,
        control: RunControl,
        container: str,
        ended: Ended,
        output: Future[Captured],
        watch: Watch | None,
    ) -> Outcome:
        """The outcome from how the run ended, its output and its container."""
        if control.cancelled.is_set():
            raise Cancelled("the run was cancelled")
        exit_code, timed_out = ended.exit_code, ended.timed_out
        returned = self.containers.returned
        with engine_errors("reading the container's output"):
            captured = output.result(timeout=OUTPUT_GRACE_SECONDS)
            oom_killed = self._oom_killed(container, exit_code, watch)
        outcome = Outcome(
            exit_code=exit_code,
            stdout=bytes(captured.kept["stdout"]),
            stderr=bytes(captured.kept["stderr"]),
            stdout_truncated=captured.cut["stdout"],
            stderr_truncated=captured.cut["stderr"],
            timed_out=timed_out,
            oom_killed=oom_killed,
            scratch_exceeded=self.containers.scratch_message(ended.stopped_for, spec.scratch_bytes),
        )
        if spec.raw_returned:
            outcome.files, outcome.unreturned = returned.spooled(spec.collecting, container)
        else:
            outcome.returned, outcome.unreturned = returned.returned(spec.collecting, container)
        return outcome

    def _oom_killed(self, container: str, exit_code: int | None, watch: Watch | None) -> bool:
        """From the event stream when it saw the run end (its `oom` comes before the `die`);
        from the container's state otherwise, and for a SIGKILL without an `oom` seen."""
        if watch is not None and not watch.lost and (watch.oom or exit_code != SIGKILLED):
            return watch.oom
        return bool(self.containers.api.inspect_container(container)["State"].get("OOMKilled"))
