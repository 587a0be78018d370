"""The warm pool (`RUNNER_WARM_POOL`): containers created and started ahead of runs, each waiting
in a shell (`waiter`) for the one run it will serve, then removed like any run's.

- Made like a cold run's container (`Containers.create`: the same hardening, no network with
  the runner's hosts file, the runner's default limits), with the image's environment, user and
  working dir; its input, output and error are attached before it starts and held by the
  runner (`Waiting`), so nothing it prints is missed and, when the runner dies, its waiter reads
  end of file and exits.
- A run takes one (`take`) when it fits: same image (by id) and runtime, no network, content
  that can go straight into the container, the image's user, nothing streamed in; everything
  else takes the cold path, and so does a run that finds no live container. Before its command
  starts the run's limits are applied (when they differ from the pool's: memory, CPU and pids
  by the engine, a smaller largest file by the line), its content (small content of a root
  image by the line itself: `waiter.content_steps`) and working dir are put in place; then one
  line (`waiter.command_line`) starts the command as PID 1, and the run's clock.
- Refilled in the background, off the answer's path: a taken container is replaced once the
  run that took it is over (its answer, or its async command started) or `REFILL_AFTER_SECONDS`
  after the take, whichever comes first, because a container's start is the engine's heaviest
  work and, begun at the take, it slows the very run the pool is for (on the 2-core machine of
  `bench.warm`, it added about a fifth to an `echo hi` answer). Containers are made in
  parallel only in the slots runs leave free (runs in flight plus fills under way stay within
  RUNNER_MAX_CONCURRENT_RUNS, so no run waits for a slot because of the pool); idle containers
  are replaced after `MAX_IDLE_SECONDS`, well before their deadline label lets any reaper take
  them.
  An image whose waiter cannot start (no POSIX shell) is logged once and never pooled.

Labels are fixed at create, when the run and its tenant are not known yet. So a pool container
carries the runner's managed, instance, owner (lease) and deadline labels, role `pool`, a run id
of its own and no tenant: no tenant's selector can ever match it, so it is in no tenant's
listing, and the reaper removes it like any synchronous run's container once its runner's lease
is gone. At take, the run's identity goes where labels can be made: a claim volume
`oneoff-<run>-claim` (role `warm-claim`) carrying the run id, the tenant, the owner and the
container's id, and the container is renamed `oneoff-<run>` like a cold run's (both beside the
run, off the answer's path). Only the runner
makes claims (callers cannot set reserved labels, nor mount a runner-made volume), a claim is
made after the container left the pool (so it names one run's container only), and it lives
and is reaped with its run's objects. Listings show a claimed container to the claim's tenant
only; cancel finds it in this runner's memory (a synchronous run is its runner's alone).

An async run (POST /runs, MCP's run_container) takes one too. Its claim carries every label a
cold async container would (role `async-run`: tenant, timeout, TTL, output caps, idempotency
key), plus the marker its log starts after and when its command started; it is made before
the launch returns, and `backends.docker.runs` sees the container with its claim's labels
(`run_state.claimed`), so any runner finds, follows, keeps and removes the run as a cold one,
and reapers leave the container to it. Pool containers keep their output in the engine's
bounded `local` log (as async runs' containers do) for that reason; the runner lets go of an
async run's attach once its input is written (`Taken.go_detached`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import docker
import requests
from docker.utils.socket import frames_iter

from backends import waiter
from backends.docker import sockets
from backends.docker.containers import Containers
from backends.docker.content import straight_in
from backends.docker.errors import engine_errors, start_refused
from backends.labels import CLAIM_ROLE, CONTAINER, MARKER, POOL_ROLE, RUN_IMAGE, STARTED, TENANT
from runner.errors import (
    BackendUnavailable,
    Conflict,
    InvalidRequest,
    NotFound,
    RunnerError,
)
from runner.settings import WarmEntry
from runner.sizes import parse_size
from runner.spec import RunControl, RunSpec

log = logging.getLogger("oneoff_runner.docker")

MAX_IDLE_SECONDS = 1800.0
RETRY_SECONDS = 30.0
POLL_SECONDS = 1.0
REFILL_AFTER_SECONDS = 2.0
ROOT_USERS = ("", "0", "root", "0:0", "root:root")
LOST = (NotFound, Conflict, BackendUnavailable)
"""What a take meets when its container went (removed, engine restarted): try another."""


class WarmLost(Exception):
    """The taken container died before the run's command started: the run goes cold."""


@dataclass
class Waiting:
    """A started pool container, its streams attached, and what the cold path would give its
    runs (the image's argv, environment and user)."""

    entry: WarmEntry
    container: str
    attached: Any
    image_id: str
    env: dict[str, str]
    user: str
    entrypoint: list[str] | None
    cmd: list[str] | None
    born: float = field(default_factory=time.monotonic)

    @property
    def socket(self) -> socket.socket:
        return sockets.plain(self.attached)

    def alive(self) -> bool:
        """Whether its attach is still open (an engine restart or a removal closes it)."""
        try:
            return self.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False

    def close(self) -> None:
        _close(self.attached)


class Taken:
    """A pool container given to one run: `frames` reads its output (the status marker
    removed), `go` writes the command line and the run's input, `started` tells whether the
    command began."""

    def __init__(
        self,
        waiting: Waiting,
        line: bytes,
        marker: bytes,
        claim: Future[str],
        labels: dict[str, str] | None = None,
    ) -> None:
        self.waiting = waiting
        self.container = waiting.container
        self._socket = waiting.socket  # kept: closed, it fails with OSError (not None)
        self._line = line
        self._marker = marker
        self.claim = claim
        self.labels = labels or {}
        """An async run's claim's labels (the run's)."""
        self.status: bytes | None = None
        self._decided = threading.Event()

    def frames(self) -> Iterator[tuple[bytes | None, bytes | None]]:
        head = b""
        try:
            for stream, data in frames_iter(self._socket, False):
                if stream == 1 and self.status is None:
                    head += data
                    if len(head) <= len(self._marker):
                        continue
                    known = head.startswith(self._marker)
                    self.status = head[len(self._marker) : len(self._marker) + 1] if known else b"?"
                    self._decided.set()
                    data = head[len(self._marker) + 1 :]
                yield (data, None) if stream == 1 else (None, data)
        except OSError:
            return
        finally:
            self._decided.set()

    def go(self, stdin: bytes | None, then: Callable[[], None] | None = None) -> None:
        """Start the command: its line, then its input and end of file (in a thread of its own
        when it is large, as on the cold path: a command may print before it reads); `then`
        once the input is written."""
        sock = self._socket
        try:
            sock.sendall(self._line)
        except OSError as exc:
            raise WarmLost(str(exc)) from exc
        if stdin and len(stdin) > 64 * 1024:
            threading.Thread(target=self._feed, args=(stdin, then), daemon=True).start()
        else:
            self._feed(stdin or b"", then)

    def _feed(self, data: bytes, then: Callable[[], None] | None) -> None:
        with contextlib.suppress(OSError):
            self._socket.sendall(data)
            self._socket.shutdown(socket.SHUT_WR)
        if then is not None:
            then()

    def go_detached(self, stdin: bytes | None, seconds: float) -> None:
        """Start an async run's command (as `go`, then `started`), and let go of the attach
        once its input is written: its output goes on to the engine's log, which any runner
        reads, and it no longer depends on this runner."""
        threading.Thread(target=self._drain, name="oneoff-warm-drain", daemon=True).start()
        self.go(stdin, then=functools.partial(self._let_go, seconds))
        self.started(seconds)

    def _drain(self) -> None:
        """Read the attach to its end (the engine would hold the command's output for it),
        then close it: this thread is its only reader."""
        try:
            for _ in self.frames():
                pass
        finally:
            self.waiting.close()

    def _let_go(self, seconds: float) -> None:
        self._decided.wait(seconds)  # the shell's word first: `started` reads it from the attach
        self.stop()

    def started(self, seconds: float) -> None:
        """Wait for the shell's word that the command starts; `WarmLost` when it cannot (no
        such program or working dir: the cold path then answers as it does) or the container
        died first."""
        self._decided.wait(seconds)
        if self.status != waiter.STARTED and self._decided.is_set():
            raise WarmLost(f"the command did not start in the warm container ({self.status!r})")

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)


class Pool:
    def __init__(self, containers: Containers) -> None:
        self.containers = containers
        settings = containers.settings
        self.entries = settings.warm_entries()
        self._memory = parse_size(settings.default_memory)
        self._nano_cpus = int(settings.default_cpus * 1e9)
        self._lock = threading.Lock()
        self._filled = threading.Condition(self._lock)
        self._idle: dict[WarmEntry, deque[Waiting]] = {entry: deque() for entry in self.entries}
        self._retry_at: dict[WarmEntry, float] = {}
        self._filling = dict.fromkeys(self.entries, 0)
        self._unpoolable: set[WarmEntry] = set()
        self._images: dict[str, dict[str, Any]] = {}
        self._taken: dict[str, Taken] = {}
        self._held: dict[str, tuple[WarmEntry, float]] = {}
        """Runs in flight that took a container, by run id: (its entry, when), not refilled yet."""
        self._in_flight = 0
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._claims = ThreadPoolExecutor(max_workers=2, thread_name_prefix="oneoff-claim")
        size = min(sum(entry.size for entry in self.entries), settings.max_concurrent_runs)
        self._makers = ThreadPoolExecutor(max(size, 1), thread_name_prefix="oneoff-pool-fill")
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin filling (at the runner's first lease renewal, at startup); again: nothing."""
        with self._lock:
            if self._thread is not None or not self.entries or self._closed.is_set():
                return
            self._thread = threading.Thread(target=self._refill, name="oneoff-pool", daemon=True)
            self._thread.start()

    # ---- runs ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def running(self, run_id: str | None = None) -> Iterator[None]:
        """Count a run in flight (a synchronous run, an async run being started or watched):
        fills take only the slots these leave free. A container the run `run_id` takes
        meanwhile is refilled when this ends (or `REFILL_AFTER_SECONDS` after the take)."""
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                if run_id is not None:
                    self._held.pop(run_id, None)
            self._wake.set()

    def take(
        self, spec: RunSpec, control: RunControl, labels: dict[str, str] | None = None
    ) -> Taken | None:
        """A warm container prepared for the run (limits, content, working dir, claim), or None:
        the run goes cold. Raises what the cold path would for the run's own mistakes.
        `labels`: an async run's, which its claim carries (made before this returns)."""
        entry = self._entry_for(spec, control)
        if entry is None:
            return None
        taken = self._take(spec, control, labels, entry)
        if taken is None:
            with self._lock:
                self._held.pop(spec.run_id, None)  # nothing taken: refill now
            self._wake.set()
        return taken

    def _take(
        self,
        spec: RunSpec,
        control: RunControl,
        labels: dict[str, str] | None,
        entry: WarmEntry,
    ) -> Taken | None:
        image_id = self._image_id(spec.image)
        while (waiting := self._pop(entry, spec.run_id)) is not None:
            if waiting.image_id != image_id:
                self.discard(waiting)  # the tag moved: the pool refills from the new image
                continue
            if not self._fits(spec, waiting):
                self._push_back(waiting, spec.run_id)
                return None
            try:
                return self._prepare(spec, control, waiting, labels)
            except LOST as exc:
                log.info("warm container %s lost (%s); trying another", waiting.container[:12], exc)
                self.discard(waiting)
        return None

    def _entry_for(self, spec: RunSpec, control: RunControl) -> WarmEntry | None:
        if not self.entries:
            return None
        if control.uploads is not None or spec.network != "none" or not straight_in(spec):
            return None  # streamed content is read once; a network or a mount needs create
        image = waiter.pool_image(spec.image)
        for entry in self.entries:
            if waiter.pool_image(entry.image) == image and entry.runtime == spec.runtime:
                return None if entry in self._unpoolable else entry
        return None

    def _image_id(self, image: str) -> str | None:
        try:
            with engine_errors("inspecting the image"):
                return str(self.containers.api.inspect_image(image)["Id"])
        except RunnerError:
            return None

    def _pop(self, entry: WarmEntry, run_id: str) -> Waiting | None:
        """An idle container of the entry, held for the run (its refill waits: `running`)."""
        while True:
            with self._lock:
                idle = self._idle[entry]
                waiting = idle.popleft() if idle else None
                if waiting is not None:
                    self._held[run_id] = (entry, time.monotonic())
            if waiting is None or waiting.alive():
                return waiting
            self.discard(waiting)

    def _push_back(self, waiting: Waiting, run_id: str) -> None:
        with self._lock:
            self._held.pop(run_id, None)  # with the container back, in one step
            if not self._closed.is_set():
                self._idle[waiting.entry].appendleft(waiting)
                return
        self.discard(waiting)  # closed meanwhile: nobody would remove it

    def _fits(self, spec: RunSpec, waiting: Waiting) -> bool:
        if spec.user not in (None, waiting.user):
            return False
        default_scratch = self.containers.settings.default_scratch_bytes
        if spec.scratch_bytes != default_scratch and self.containers.quota():
            return False  # the engine's quota was set at create, for the default
        if spec.scratch_bytes > default_scratch or spec.scratch_bytes % waiter.LIMIT_BLOCK:
            return False  # the shell can lower the file size limit, in blocks, not raise it

        argv = waiter.engine_argv(waiting.entrypoint, waiting.cmd, spec.entrypoint, spec.command)
        return waiter.fits(argv, spec.env, spec.working_dir)

    def _prepare(
        self,
        spec: RunSpec,
        control: RunControl,
        waiting: Waiting,
        labels: dict[str, str] | None,
    ) -> Taken | None:
        container = waiting.container
        as_root = waiting.user in ROOT_USERS
        content = waiter.content_steps(spec.mounts) if as_root else None
        try:
            self._limit(spec, container)
            if content is None and not self.containers.content.into_container(
                spec, None, container
            ):
                self.discard(waiting)  # the image has one of the paths: a mount must hide it
                return None
        except LOST:
            raise
        except RunnerError:
            self.discard(waiting)  # refused: the cold path answers as it does
            return None
        marker = secrets.token_hex(16)
        argv = waiter.engine_argv(waiting.entrypoint, waiting.cmd, spec.entrypoint, spec.command)
        cold_env = {**waiting.env, **spec.env}
        default_scratch = self.containers.settings.default_scratch_bytes
        line = waiter.command_line(
            argv,
            spec.env,
            spec.working_dir,
            cold_env,
            marker,
            as_root=as_root,
            content=content or (),
            file_size=spec.scratch_bytes if spec.scratch_bytes != default_scratch else None,
        )
        if labels is None:
            taken = Taken(
                waiting, line, marker.encode(), self._claims.submit(self._claim, spec, container)
            )
            with self._lock:
                self._taken[spec.run_id] = taken
            return taken
        return self._claimed_async(spec, waiting, line, marker, labels)

    def _claimed_async(
        self, spec: RunSpec, waiting: Waiting, line: bytes, marker: str, labels: dict[str, str]
    ) -> Taken | None:
        """An async run's take: its claim made now (any runner finds the run by it from then
        on), with where its log starts, when it starts and its image as asked."""
        claim = {**labels, MARKER: marker, STARTED: repr(time.time()), RUN_IMAGE: spec.image}
        claim[CONTAINER] = waiting.container
        made: Future[str] = Future()
        try:
            made.set_result(self._claim(spec, waiting.container, claim))
        except RunnerError as exc:
            log.info("warm container %s not claimed (%s)", waiting.container[:12], exc)
            waiting.close()
            self.containers.remove(waiting.container, claim_name(spec.run_id))
            return None  # removed before the cold path makes a container of the run's name
        return Taken(waiting, line, marker.encode(), made, claim)

    def _limit(self, spec: RunSpec, container: str) -> None:
        """The run's limits, before its command: only when they differ from the pool's."""
        if (spec.memory_bytes, spec.nano_cpus) == (self._memory, self._nano_cpus):
            return
        api = self.containers.api
        limits = {
            "Memory": spec.memory_bytes,
            "MemorySwap": spec.memory_bytes,
            "NanoCpus": spec.nano_cpus,
            "PidsLimit": spec.pids_limit,
        }
        url = f"{api.base_url}/v{api.api_version}/containers/{container}/update"
        with engine_errors("applying the run's limits"):
            response = api.post(url, json=limits)  # docker-py's update lacks NanoCpus, PidsLimit
            try:
                response.raise_for_status()
            except requests.exceptions.HTTPError as exc:
                raise docker.errors.create_api_error_from_http_exception(exc) from exc

    def _claim(self, spec: RunSpec, container: str, labels: dict[str, str] | None = None) -> str:
        """The run's identity where labels can still be set: a claim volume (`labels`, by
        default a synchronous run's); and the name a cold run's container has (its `rename`
        event tells the engine's watchers the run began). A synchronous run's is made beside
        the run (its removal waits for it), not on the answer's path."""
        containers = self.containers
        name = claim_name(spec.run_id)
        if labels is None:
            labels = containers.labels(spec.run_id, CLAIM_ROLE, spec.timeout_seconds, spec.tenant)
        labels = {**labels, CONTAINER: container}
        with engine_errors("claiming the warm container"):
            containers.api.create_volume(name, driver="local", labels=labels)
            containers.api.rename(container, f"oneoff-{spec.run_id}")  # a cold run's name
        return name

    def kill(self, run_id: str) -> None:
        """Cancel: kill the run's warm container, if it has one."""
        with self._lock:
            taken = self._taken.get(run_id)
        if taken is not None:
            self.containers.kill(taken.container)

    def finish(self, run_id: str, taken: Taken, *, later: bool, reader: Future[Any] | None) -> None:
        """The run is over: its container and claim removed, once the claim is made (`later`:
        in the background, else before this returns). The attach is closed once its `reader`
        is done: closed under a reader about to poll it, its number could be reused by another
        connection, which the reader would then wait on."""
        with self._lock:
            self._taken.pop(run_id, None)
        taken.stop()
        if reader is None:
            taken.waiting.close()
        else:
            reader.add_done_callback(lambda _: taken.waiting.close())
        claim = claim_name(run_id)
        if later:
            taken.claim.add_done_callback(
                lambda _: self.containers.remove_later(taken.container, claim)
            )
            return
        with contextlib.suppress(Exception):
            taken.claim.result(timeout=self.containers.settings.docker_api_timeout_seconds)
        self.containers.remove(taken.container, claim)

    def discard(self, waiting: Waiting) -> None:
        """Remove a container that serves no run; the pool refills behind it at once."""
        waiting.close()
        self.containers.remove_later(waiting.container, None)
        self._wake.set()

    # ---- refill -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop refilling; the idle containers are removed (with the runner's other removals)."""
        self._closed.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.containers.settings.docker_api_timeout_seconds)
        self._makers.shutdown(wait=True)
        with self._lock:
            idle = [waiting for queue in self._idle.values() for waiting in queue]
            for queue in self._idle.values():
                queue.clear()
        for waiting in idle:
            self.discard(waiting)
        self._claims.shutdown(wait=True)

    def idle(self) -> int:
        with self._lock:
            return sum(len(queue) for queue in self._idle.values())

    def wait_full(self, seconds: float) -> bool:
        """Wait until every poolable entry has its size of idle containers (tests, benches)."""

        def full() -> bool:
            entries = [entry for entry in self.entries if entry not in self._unpoolable]
            return all(len(self._idle[entry]) >= entry.size for entry in entries)

        with self._filled:
            return self._filled.wait_for(full, seconds)

    def _refill(self) -> None:
        """Retire old idle containers and start a fill for each container an entry is short,
        while runs in flight and fills under way leave a slot free."""
        while not self._closed.is_set():
            self._drop_old_holds()
            for entry in self.entries:
                self._retire(entry)
                while not self._closed.is_set() and self._may_fill(entry):
                    with self._lock:
                        self._filling[entry] += 1
                    self._makers.submit(self._fill, entry)
            self._wake.wait(self._next_poll())
            self._wake.clear()

    def _drop_old_holds(self) -> None:
        """A run holds its taken container's refill for `REFILL_AFTER_SECONDS` at most."""
        now = time.monotonic()
        with self._lock:
            for run_id, (_, at) in list(self._held.items()):
                if now - at >= REFILL_AFTER_SECONDS:
                    del self._held[run_id]

    def _next_poll(self) -> float:
        """Seconds to the next look: a second, or less when a hold ends first."""
        now = time.monotonic()
        with self._lock:
            ends = [at + REFILL_AFTER_SECONDS - now for _, at in self._held.values()]
        return min([POLL_SECONDS, *(max(left, 0.0) + 0.01 for left in ends)])

    def _may_fill(self, entry: WarmEntry) -> bool:
        limit = self.containers.settings.max_concurrent_runs
        with self._lock:
            held = sum(1 for of, _ in self._held.values() if of == entry)
            short = len(self._idle[entry]) + self._filling[entry] + held < entry.size
            room = self._in_flight + sum(self._filling.values()) < limit
        due = self._retry_at.get(entry, 0) <= time.monotonic()
        return short and room and due and entry not in self._unpoolable

    def _fill(self, entry: WarmEntry) -> None:
        waiting = None
        try:
            waiting = self._make(entry)
        except RunnerError as exc:
            self._retry_at[entry] = time.monotonic() + RETRY_SECONDS
            log.warning("warm pool: %s not refilled: %s", entry.image, exc.message)
        except Exception:  # a bug must not stop the pool: it is logged, and retried
            self._retry_at[entry] = time.monotonic() + RETRY_SECONDS
            log.exception("warm pool: %s not refilled", entry.image)
        finally:
            with self._filled:
                self._filling[entry] -= 1
                if waiting is not None:
                    self._idle[entry].append(waiting)
                self._filled.notify_all()
            self._wake.set()

    def _retire(self, entry: WarmEntry) -> None:
        now = time.monotonic()
        with self._lock:
            queue = self._idle[entry]
            old = [waiting for waiting in queue if now - waiting.born > MAX_IDLE_SECONDS]
            for waiting in old:
                queue.remove(waiting)
        for waiting in old:
            self.discard(waiting)

    def _make(self, entry: WarmEntry) -> Waiting | None:
        """One pool container, created and started like a cold run's, waiting."""
        containers, settings = self.containers, self.containers.settings
        spec = self._spec(entry)
        lasts = MAX_IDLE_SECONDS + settings.max_timeout_seconds
        labels = containers.labels(spec.run_id, POOL_ROLE, lasts, "")
        del labels[TENANT]
        container = containers.create(spec, RunControl(), None, labels, containers.kept_log())
        attached = None
        try:
            with engine_errors("attaching to the warm container"):
                attached = containers.streams.attach_socket(
                    container, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
                )
            return self._start(entry, spec, container, attached)
        except BaseException:
            if attached is not None:
                _close(attached)
            containers.remove(container, None)
            raise

    def _start(
        self, entry: WarmEntry, spec: RunSpec, container: str, attached: Any
    ) -> Waiting | None:
        api = self.containers.api
        try:
            with engine_errors("starting the warm container", start_refused(spec)):
                api.start(container)
                inspected = api.inspect_container(container)
        except InvalidRequest as exc:
            self._not_poolable(entry, container, attached, exc.message)
            return None
        if not inspected["State"]["Running"]:
            self._not_poolable(entry, container, attached, "its shell exited")
            return None
        image = self._image(inspected["Image"])
        config = inspected["Config"]
        return Waiting(
            entry=entry,
            container=container,
            attached=attached,
            image_id=inspected["Image"],
            env=dict(item.partition("=")[::2] for item in config.get("Env") or []),
            user=config.get("User") or "",
            entrypoint=image.get("Entrypoint"),
            cmd=image.get("Cmd"),
        )

    def _not_poolable(self, entry: WarmEntry, container: str, attached: Any, why: str) -> None:
        log.warning(
            "warm pool: %s has no POSIX shell to wait in (%s); its runs go cold", entry.image, why
        )
        with self._filled:
            self._unpoolable.add(entry)
            self._filled.notify_all()
        _close(attached)
        self.containers.remove(container, None)

    def _image(self, image_id: str) -> dict[str, Any]:
        """The image's config (its ENTRYPOINT and CMD), kept by id."""
        if image_id not in self._images:
            with engine_errors("inspecting the image"):
                self._images[image_id] = self.containers.api.inspect_image(image_id)["Config"]
        return self._images[image_id]

    def _spec(self, entry: WarmEntry) -> RunSpec:
        """What a pool container is made as: a default run of the image, its shell waiting."""
        settings = self.containers.settings
        return RunSpec(
            run_id=f"pool-{secrets.token_hex(8)}",
            image=entry.image,
            command=[waiter.WAITER],
            entrypoint=["/bin/sh", "-c"],
            env={},
            working_dir=None,
            user=None,
            pull_policy="never",
            auth=None,
            mounts=[],
            timeout_seconds=settings.max_timeout_seconds,
            memory_bytes=self._memory,
            nano_cpus=self._nano_cpus,
            pids_limit=settings.pids_limit,
            network="none",
            max_output_bytes=0,
            max_response_bytes=0,
            stdin=b"",
            runtime=entry.runtime,
            scratch_bytes=settings.default_scratch_bytes,
        )


def _close(attached: Any) -> None:
    """An attach's socket, and docker-py's wrapper around it."""
    with contextlib.suppress(OSError, ValueError):
        sockets.plain(attached).close()
        attached.close()


def claim_name(run_id: str) -> str:
    """The volume that gives a run its warm container (`Pool._claim`)."""
    return f"oneoff-{run_id}-claim"
