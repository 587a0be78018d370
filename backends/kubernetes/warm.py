"""The warm pool on Kubernetes (`RUNNER_WARM_POOL`): pods created and started ahead of synchronous
runs, each a shell waiting on its open input (`backends.waiter`) for the one run it will serve,
then deleted like any run's pod.

- A warm pod is the pod a default run of the image gets (`manifests.warm_pod`: the same
  security context, limits, runtime class, node selector and service account), its run
  container's command the waiter, with `stdin` and `stdinOnce`. It pulls its image when it
  starts (`Always`) and is replaced after `MAX_IDLE_SECONDS`, so a tag is at most that old when
  a run takes it (a take skips older ones). Its `activeDeadlineSeconds` outlasts its idle
  time and the longest run, since a take may only lower it, to the run's.
- A run takes one when its pod would be the same but for what the line sets
  (`manifests.warm_shape`: command, environment, working dir): an entry's image and runtime,
  the default limits and user, no volumes or files, no credentials of its own (its pull must
  use them), and a non-empty `entrypoint`: the API shows no image's ENTRYPOINT or CMD, so a
  run that leaves them to the image goes as a Job. So do all async runs, and a run that finds
  no running warm pod.
- Take: one PATCH under the pod's `resourceVersion` moves it from the pool to the run, so no two
  runs (of this runner or another) take one pod: its labels become the run's (run id, tenant,
  role, deadline; a pod's labels can change, unlike a container's, so no claim object is
  needed) and its `activeDeadlineSeconds` the run's timeout, counted from now. Then the runner
  attaches, writes the line (`waiter.command_line`: environment, working dir, a marker line,
  `exec`), closes the input and reads the marker: the command is PID 1 and its clock runs. A
  line that fails (no such program, a working dir the shell cannot enter) deletes the pod and
  the run goes as a Job, whose pod then fails as it would have. From there the pod is
  followed and read as a Job's is (`RunPods`), the marker line taken out of its log.
- Refill: a thread keeps each entry's count of pods, woken by every take. A pod that cannot
  start (its image cannot be pulled, no shell) is deleted and its entry rests `RETRY_SECONDS`.
- Reaping: warm pods carry the runner's owner (lease) and a deadline label; any runner's reaper
  deletes them when that lease is gone or that deadline passed, as a synchronous run's Job.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import websocket
from kubernetes.client import ApiClient, CoreV1Api
from kubernetes.stream import stream
from websocket import ABNF, WebSocketException

from backends import waiter
from backends.kubernetes.errors import api_errors
from backends.kubernetes.expansion import expanded
from backends.kubernetes.jobs import Jobs
from backends.kubernetes.manifests import RUN_CONTAINER, run_as, warm_pod, warm_shape
from backends.labels import (
    MANAGED,
    OWNER,
    POOL,
    POOL_ROLE,
    ROLE,
    RUN_ID,
    RUN_ROLE,
    TENANT,
    run_labels,
)
from runner.errors import Conflict, NotFound, RunnerError
from runner.settings import WarmEntry
from runner.sizes import parse_size
from runner.spec import RunControl, RunSpec

log = logging.getLogger("oneoff_runner.kubernetes")

MAX_IDLE_SECONDS = 600
"""A warm pod is replaced after this long: its image's tag was resolved when it started."""
DEADLINE_SLACK_SECONDS = 300
"""Past `MAX_IDLE_SECONDS` (and the labels' cleanup grace), when any runner's reaper may
delete an untaken pod whose runner still holds its lease."""
RETRY_SECONDS = 60.0
POLL_SECONDS = 5.0
START_SECONDS = 10
"""How long a taken pod's shell has to answer its line."""
BEFORE_MARKER_BYTES = 4096
"""What a shell may print before its marker (nothing, normally)."""
STDOUT_CHANNEL = b"\x01"
STARTING = frozenset({"ContainerCreating", "PodInitializing"})


@dataclass(frozen=True)
class WarmTake:
    """A warm pod given to one run, its command started at `started`; `marker` is the line the
    shell printed before it, to be taken out of the pod's log."""

    pod: str
    marker: bytes
    started: datetime


class WarmPods:
    def __init__(self, jobs: Jobs) -> None:
        self.jobs, self.api, self.settings, self.lease = jobs, jobs.api, jobs.settings, jobs.lease
        self.entries = {_key(entry): entry for entry in self.settings.warm_entries()}
        self._shapes = {
            key: warm_shape(self._spec(e), self.settings) for key, e in self.entries.items()
        }
        self._taken: dict[str, str] = {}  # run id → its pod
        self._resting: dict[str, float] = {}  # entry → when it may be filled again
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start filling (once; nothing when no entry is configured)."""
        with self._lock:
            if self._thread is not None or not self.entries or self._closed.is_set():
                return
            self._thread = threading.Thread(target=self._keep, name="oneoff-warm-pods", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop filling and delete this runner's idle warm pods."""
        self._closed.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=POLL_SECONDS * 2)
        if self.entries:
            with contextlib.suppress(RunnerError):
                for pod in self._idle():
                    self.delete(pod.metadata.name, pod.metadata.resource_version)

    # ---- runs ---------------------------------------------------------------------------

    def take(self, spec: RunSpec, control: RunControl) -> WarmTake | None:
        """A warm pod running the run's command, or None: the run goes as a Job (also when
        the API server fails meanwhile: the Job path then says what is wrong). Raises what
        the Job would for the run's own mistakes (a bad `user`)."""
        key = self.entry_for(spec)
        if key is None:
            return None
        try:
            pods = self._idle(key)
        except RunnerError as exc:
            log.warning("warm pool: %s; the run goes as a Job", exc.message)
            return None
        fresh = time.time() - MAX_IDLE_SECONDS
        for pod in sorted(pods, key=lambda pod: pod.metadata.creation_timestamp, reverse=True):
            if control.cancelled.is_set():
                return None  # the Job path says it was cancelled
            if not _waiting(pod) or pod.metadata.creation_timestamp.timestamp() < fresh:
                continue
            try:
                claimed = self._claim(pod, spec)
            except RunnerError as exc:
                log.warning("warm pool: cannot take a pod (%s); the run goes as a Job", exc.message)
                self._drop_if_taken(pod.metadata.name, spec.run_id)
                return None
            if claimed:
                return self._begin(pod.metadata.name, spec, control)
        return None

    def _begin(self, name: str, spec: RunSpec, control: RunControl) -> WarmTake | None:
        """Start the run in the pod it took; None (the pod deleted) when that failed."""
        with self._lock:
            self._taken[spec.run_id] = name  # a cancel from now on deletes it
        self._wake.set()
        try:
            started = self._start(name, spec)
        except (RunnerError, WebSocketException, OSError) as exc:
            log.info("warm pod %s did not start the run: %s", name, exc)
            started = None
        if started is None or control.cancelled.is_set():
            self.release(spec.run_id)
            return None
        return started

    def kill(self, run_id: str) -> bool:
        """Delete the pod of a run in flight here (cancel); False when it has none."""
        with self._lock:
            name = self._taken.get(run_id)
        if name is not None:
            self.delete(name)
        return name is not None

    def release(self, run_id: str) -> None:
        """The run is done with its pod: delete it."""
        with self._lock:
            name = self._taken.pop(run_id, None)
        if name is not None:
            self.delete(name)

    def _drop_if_taken(self, name: str, run_id: str) -> None:
        """After a take whose answer was lost: delete the pod if the take did happen."""
        with contextlib.suppress(RunnerError), api_errors("reading a warm pod"):
            pod = self.api.core.read_namespaced_pod(name, self.api.namespace)
            if (pod.metadata.labels or {}).get(RUN_ID) == run_id:
                self.delete(name, pod.metadata.resource_version)

    def entry_for(self, spec: RunSpec) -> str | None:
        """The pool entry whose warm pods a run of `spec` can take; None: it goes as a Job."""
        if not self.entries or spec.stdin is not None or spec.network != "none":
            return None
        if spec.auth is not None:
            return None  # the run pulls with its own credentials, as a Job
        if not spec.entrypoint:
            return None  # the image's ENTRYPOINT/CMD would be needed, and are not known here
        key = _key(WarmEntry(spec.image, 1, spec.runtime))
        if key not in self.entries:
            return None
        kubelet = _kubelet_view(spec)
        if kubelet is None or not waiter.fits(kubelet[1], kubelet[0], spec.working_dir):
            return None
        return key if warm_shape(spec, self.settings) == self._shapes[key] else None

    def _claim(self, pod: Any, spec: RunSpec) -> bool:
        """Move `pod` from the pool to the run, if it is still as listed."""
        since_start = time.time() - pod.status.start_time.timestamp()
        timeout = max(1, math.ceil(spec.timeout_seconds)) + START_SECONDS  # lowered at start
        deadline = math.ceil(max(0.0, since_start)) + timeout
        instance = self.settings.instance_id
        labels = run_labels(spec.run_id, instance, RUN_ROLE, spec.tenant, spec.timeout_seconds)
        body = {
            "metadata": {
                "resourceVersion": pod.metadata.resource_version,
                "labels": {**labels, **self.lease.labels()},
            },
            "spec": {"activeDeadlineSeconds": deadline},
        }
        try:
            self.lease.hold()
            with api_errors("taking a warm pod"):
                self.api.core.patch_namespaced_pod(pod.metadata.name, self.api.namespace, body)
        except (Conflict, NotFound):
            return False  # another run took it, or it went
        return True

    def _start(self, name: str, spec: RunSpec) -> WarmTake | None:
        """Write the run's line to the pod's shell; the take once its command started, None
        when the line failed before `exec`."""
        marker = secrets.token_hex(16)
        kubelet = _kubelet_view(spec)
        assert kubelet is not None  # entry_for checked it
        env, argv = kubelet
        as_root = run_as(spec.user, self.settings)[0] == 0
        line = waiter.command_line(
            argv, env, spec.working_dir, env, marker, as_root=as_root, started_line=True
        )
        websocket.setdefaulttimeout(START_SECONDS)  # the attach's connect and reads
        client = ApiClient(self.api.client.configuration)  # stream() swaps a client's request
        try:
            with api_errors("attaching to a warm pod"):
                socket = stream(
                    CoreV1Api(client).connect_get_namespaced_pod_attach,
                    name,
                    self.api.namespace,
                    container=RUN_CONTAINER,
                    stdin=True,
                    stdout=True,
                    stderr=False,
                    tty=False,
                    binary=True,
                    _preload_content=False,
                )
            try:
                socket.write_stdin(line)
                with contextlib.suppress(Exception):
                    socket.close_channel(0)  # the command reads end of file, as cold
                status = _status(socket, marker.encode())
            finally:
                socket.close()  # says goodbye, unless the server already did:
                socket.sock.shutdown()  # then only this closes the connection
        finally:
            client.close()
        if status != waiter.STARTED:
            return None
        started = datetime.now(UTC)
        return WarmTake(name, marker.encode() + waiter.STARTED + b"\n", started)

    # ---- the pool -----------------------------------------------------------------------

    def _keep(self) -> None:
        while not self._closed.is_set():
            try:
                self._fill()
            except RunnerError as exc:
                log.warning("warm pool: cannot fill (%s); trying again", exc.message)
            except Exception:
                log.exception("warm pool: filling failed; trying again")
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()

    def _fill(self) -> None:
        now, counts = time.time(), dict.fromkeys(self.entries, 0)
        for pod in self._idle():
            key = (pod.metadata.labels or {}).get(POOL, "")
            if pod.metadata.deletion_timestamp is not None:
                continue
            why = _broken(pod)
            if why is not None:
                self._rest(key, why)
            spent = now - pod.metadata.creation_timestamp.timestamp() > MAX_IDLE_SECONDS
            if key not in self.entries or why is not None or spent or _ended(pod):
                self.delete(pod.metadata.name, pod.metadata.resource_version)
                continue
            counts[key] += 1
        for key, entry in self.entries.items():
            if self._resting.get(key, 0.0) > time.monotonic() or self._closed.is_set():
                continue
            try:
                for _ in range(entry.size - counts[key]):
                    self._make(key, entry)
            except RunnerError as exc:
                self._rest(key, f"cannot create its pods: {exc.message}")

    def _rest(self, key: str, why: str) -> None:
        """An entry whose pods cannot wait for runs is not filled for `RETRY_SECONDS`."""
        image = self.entries[key].image if key in self.entries else key
        log.warning("warm pool: %s %s; trying again in %d s", image, why, RETRY_SECONDS)
        self._resting[key] = time.monotonic() + RETRY_SECONDS

    def _make(self, key: str, entry: WarmEntry) -> None:
        self.lease.hold()
        labels = {
            **run_labels(
                f"pool-{secrets.token_hex(8)}",
                self.settings.instance_id,
                POOL_ROLE,
                "",
                MAX_IDLE_SECONDS + DEADLINE_SLACK_SECONDS,
            ),
            **self.lease.labels(),
            POOL: key,
        }
        del labels[TENANT]  # no tenant's selector matches a pool pod
        meta = self.jobs.meta(f"oneoff-warm-{secrets.token_hex(6)}", labels)
        idle = MAX_IDLE_SECONDS + math.ceil(self.settings.max_timeout_seconds)
        manifest = warm_pod(self._spec(entry), self.settings, meta, idle + START_SECONDS + 60)
        with api_errors("creating a warm pod"):
            self.api.core.create_namespaced_pod(self.api.namespace, manifest)

    def _idle(self, key: str | None = None) -> list[Any]:
        """This runner process's idle pods (of one entry)."""
        selector = f"{MANAGED}=true,{OWNER}={self.lease.owner},{ROLE}={POOL_ROLE}"
        if key is not None:
            selector += f",{POOL}={key}"
        with api_errors("listing warm pods"):
            found = self.api.core.list_namespaced_pod(self.api.namespace, label_selector=selector)
        return list(found.items)

    def delete(self, name: str, version: str | None = None) -> None:
        """A warm pod (idle or a run's); one already gone is no error. With `version`, only
        if it is still as listed (not taken since, say)."""
        body = {"preconditions": {"resourceVersion": version}} if version else None
        with contextlib.suppress(NotFound, Conflict), api_errors("deleting a warm pod"):
            self.api.core.delete_namespaced_pod(name, self.api.namespace, body=body)

    def _spec(self, entry: WarmEntry) -> RunSpec:
        """What a warm pod is made as: a default run of the image, no command of its own."""
        settings = self.settings
        return RunSpec(
            run_id="pool",
            image=entry.image,
            command=None,
            entrypoint=None,
            env={},
            working_dir=None,
            user=None,
            pull_policy="always",
            auth=None,
            mounts=[],
            timeout_seconds=settings.max_timeout_seconds,
            memory_bytes=parse_size(settings.default_memory),
            nano_cpus=int(settings.default_cpus * 1e9),
            pids_limit=settings.pids_limit,
            network="none",
            max_output_bytes=0,
            max_response_bytes=0,
            runtime=entry.runtime,
            scratch_bytes=settings.default_scratch_bytes,
        )


def _key(entry: WarmEntry) -> str:
    """An entry as a label value: its image (with its implicit tag) and runtime, hashed."""
    text = f"{waiter.pool_image(entry.image)}|{entry.runtime or ''}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _status(socket: Any, marker: bytes) -> bytes | None:
    """The status byte the shell printed after `marker` on stdout, read a frame at a time
    (None: none within START_SECONDS, or past `BEFORE_MARKER_BYTES` of anything else)."""
    given_up, seen = time.monotonic() + START_SECONDS, b""
    while len(seen) <= BEFORE_MARKER_BYTES and (left := given_up - time.monotonic()) > 0:
        socket.sock.settimeout(left)
        opcode, frame = socket.sock.recv_data_frame(True)
        if opcode == ABNF.OPCODE_CLOSE:
            return None
        if frame.data[:1] == STDOUT_CHANNEL:
            seen += frame.data[1:]
        at = seen.find(marker)
        if at >= 0 and len(seen) > at + len(marker):
            return seen[at + len(marker) : at + len(marker) + 1]
    return None


def _kubelet_view(spec: RunSpec) -> tuple[dict[str, str], list[str]] | None:
    """The run's environment and argv as the kubelet would give its Job's container
    (`expansion`), or None when that needs what only the kubelet knows."""
    argv = waiter.engine_argv(None, None, spec.entrypoint, spec.command)
    return expanded(spec.env, argv)


def _waiting(pod: Any) -> bool:
    """Running, its shell started, not going."""
    if pod.metadata.deletion_timestamp is not None or pod.status.phase != "Running":
        return False
    return any(
        status.name == RUN_CONTAINER and status.state and status.state.running
        for status in pod.status.container_statuses or []
    )


def _ended(pod: Any) -> bool:
    return pod.status.phase in ("Succeeded", "Failed")


def _broken(pod: Any) -> str | None:
    """Why a pool pod will never wait for a run: its image cannot be pulled, its container
    cannot be made, or its shell ended untaken (an image without /bin/sh)."""
    for status in pod.status.container_statuses or []:
        state = status.state
        if state and state.waiting and state.waiting.reason not in STARTING:
            return f"{state.waiting.reason}: {state.waiting.message}"
        if state and state.terminated and pod.status.reason != "DeadlineExceeded":
            ended = state.terminated
            return f"its shell ended ({ended.reason}, exit {ended.exit_code}: {ended.message})"
    return None
