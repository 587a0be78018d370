"""What the service asks a backend to do: requests resolved against settings and policy.

Backends see only these: limits are numbers, content is decoded and checked, defaults applied.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

from runner.archives import encode_base64
from runner.models import PullPolicy, ReturnedVolume, RunResult, VolumeType
from runner.tenancy import LOCAL

ReturnedFile = tuple[str, IO[bytes]]
"""A returned path for the binary path: (kind, a spooled file's bytes or a plain tar), read
from the start; whoever takes it closes it."""
EventSink = Callable[[str, str], None]
"""Receives (kind, text) while a run goes on: kind "phase" (what the run is doing now), "pull"
(a JSON object: one layer's pull progress, `id`, `status`, `current`, `total`), or "stdout" /
"stderr" (output as it arrives). Called from worker threads; must not block."""


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one pull. `repr` hides the password so it never reaches a log line."""

    username: str
    password: str = field(repr=False)
    email: str | None = None
    serveraddress: str | None = None


@dataclass(frozen=True)
class MountSpec:
    """One path in the container. `content`: a file's bytes, or a checked tar.gz; None for a
    file or directory whose content arrives as a part (`RunSpec.uploads`) or is empty."""

    key: str
    path: str
    read_only: bool
    kind: VolumeType
    content: bytes | None = field(default=None, repr=False)
    mode: int = 0o644
    response: bool = False
    name: str | None = None
    host_path: str | None = None


@dataclass(frozen=True)
class RunSpec:
    """A run as the backend makes it: data only (what steers it is its `RunControl`)."""

    run_id: str
    image: str
    command: list[str] | None
    entrypoint: list[str] | None
    env: dict[str, str]
    working_dir: str | None
    user: str | None
    pull_policy: PullPolicy
    auth: RegistryAuth | None
    mounts: list[MountSpec]
    timeout_seconds: float
    memory_bytes: int
    nano_cpus: int
    pids_limit: int
    network: str
    max_output_bytes: int
    max_response_bytes: int
    scratch_bytes: int = 1024**3
    """The disk it may write (`scratch`): its writable layer, and the largest file."""
    stdin: bytes | None = field(default=None, repr=False)
    """What the command reads on standard input, then end of file; None: no input at all."""
    runtime: str | None = None
    """The OCI runtime (Docker) or RuntimeClass (Kubernetes); None: the engine's default."""
    tenant: str = LOCAL.label
    accepted_at: float | None = None  # an async run's creation time, as first reported
    raw_returned: bool = False
    """Return `response: true` paths as spooled streams (`Outcome.files`), not base64."""
    evictable: bool = False
    """Once an answer delivered its result (`Backend.mark_delivered`), the run may be removed
    to make room under the tenant's kept-runs bound (MCP's runs; never REST's)."""

    @property
    def collecting(self) -> CollectSpec:
        return CollectSpec(
            self.max_output_bytes,
            self.max_response_bytes,
            tuple(mount for mount in self.mounts if mount.response),
        )


def into_volumes(spec: RunSpec) -> dict[int, int]:
    """Writable file and directory mounts inside a writable named volume's path: index → the
    index of that volume's mount (the deepest mount holding it, which must be that volume)."""
    found: dict[int, int] = {}
    for index, mount in enumerate(spec.mounts):
        if mount.kind not in ("file", "directory") or mount.read_only:
            continue
        holders = [
            (len(other.path), at)
            for at, other in enumerate(spec.mounts)
            if other.kind in ("volume", "host") and _inside(mount.path, other.path)
        ]
        if holders:
            at = max(holders)[1]
            if spec.mounts[at].kind == "volume" and not spec.mounts[at].read_only:
                found[index] = at
    return found


def placed(spec: RunSpec) -> list[MountSpec]:
    """The run's mounts the runtime puts in place: not the content written into a named volume
    (`into_volumes`)."""
    written = into_volumes(spec)
    return [mount for index, mount in enumerate(spec.mounts) if index not in written]


def _inside(path: str, holder: str) -> bool:
    return path.rstrip("/").startswith(f"{holder.rstrip('/')}/")


@dataclass(frozen=True)
class CollectSpec:
    """What collecting a run's result needs of its request: the output cap, and the returned
    (`response: true`) paths with their bound. An async run keeps it on its container or Job
    (`backends.labels.collect_label`)."""

    max_output_bytes: int
    max_response_bytes: int
    returned: tuple[MountSpec, ...] = ()


Arriving = Iterator[tuple[int, Callable[[str], Iterator[bytes]]]]
"""Content arriving as a run is prepared (the binary path): (index of the mount it fills, its
checked plain tar members under a prefix: `runner.uploads.Members`), in arrival order; read
once, in the worker thread."""


@dataclass
class RunControl:
    """What steers a run (or a pull) while it goes on, beside its frozen spec:

    - `cancelled`: set it to stop the run; the backend checks it between steps;
    - `on_event`: the `EventSink` its phases and output go to, if any;
    - `uploads`: its content still arriving (`Arriving`), if any.
    """

    cancelled: threading.Event = field(default_factory=threading.Event)
    on_event: EventSink | None = None
    uploads: Arriving | None = None

    def emit(self, kind: str, text: str) -> None:
        if self.on_event is not None:
            self.on_event(kind, text)


@dataclass(frozen=True)
class PullSpec:
    """An image to pull ahead of runs (`pull_image`), allowed by the policy, with the caller's
    credentials for this pull only. Its `RunControl` gets "phase" and "pull" events."""

    image: str
    auth: RegistryAuth | None
    tenant: str = LOCAL.label


@dataclass
class RunRecord:
    """Where an async run is, as the backend can tell from what it keeps (labels, state), so
    that any runner on the same engine or cluster answers the same. Times are Unix seconds."""

    run_id: str
    state: str
    image: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    timed_out: bool = False
    oom_killed: bool = False
    error: str | None = None
    tenant: str = LOCAL.label
    scratch_exceeded: bool = False
    evictable: bool = False
    """Started `evictable` (`RunSpec.evictable`)."""
    delivered: bool = False
    """An answer delivered its final result (`Backend.mark_delivered`), as any runner sees."""


@dataclass
class VolumeFill:
    """A named volume to create, and a tar (plain or gzip) to unpack at its root, if any."""

    name: str
    tar: bytes | None
    driver: str | None
    driver_opts: dict[str, str]
    labels: dict[str, str]
    reuse_existing: bool
    tenant: str = LOCAL.label
    expires_at: float | None = None
    """Unix seconds it is kept until (the caller's `ttl_seconds` from now); None: the default."""


@dataclass(frozen=True)
class VolumeState:
    """A named volume as policy needs to see it: `tenant`, the label of the tenant that created
    it through the API (None: not created so); `host_path`, the host path it binds, if any;
    `runner_made`, whether the runner made it for itself (a run's content, a lease, the hosts
    file of runs without a network)."""

    tenant: str | None
    host_path: str | None = None
    runner_made: bool = False


@dataclass
class Outcome:
    """A backend's raw answer; the service turns it into the wire `RunResult`."""

    exit_code: int | None
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    oom_killed: bool
    returned: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    scratch_exceeded: str | None = None
    """Why the runner killed the run for its disk (`runner.scratch`), when it did."""
    files: dict[str, ReturnedFile] = field(default_factory=dict)
    unreturned: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Returned paths that could not be: path to (kind, why)."""
    phases: dict[str, float] = field(default_factory=dict)
    streams_merged: bool = False

    def result(self, run_id: str, elapsed: float) -> RunResult:
        """The wire result; `elapsed`: seconds from request to result."""
        if self.scratch_exceeded:
            status = "scratch_exceeded"
        elif self.timed_out:
            status = "timeout"
        elif self.exit_code == 0:
            status = "success"
        else:
            status = f"error: {self.exit_code}"
        return RunResult(
            run_id=run_id,
            status=status,
            exit_code=self.exit_code,
            stdout=self.stdout.decode("utf-8", "replace"),
            stderr=self.stderr.decode("utf-8", "replace"),
            stdout_truncated=self.stdout_truncated,
            stderr_truncated=self.stderr_truncated,
            timed_out=self.timed_out,
            oom_killed=self.oom_killed,
            scratch_exceeded=self.scratch_exceeded is not None,
            message=self.scratch_exceeded,
            streams_merged=self.streams_merged,
            volumes={
                **{
                    path: ReturnedVolume(type=kind, content=encode_base64(content))
                    for path, (kind, content) in self.returned.items()
                },
                **{
                    path: ReturnedVolume(type=kind, content="", error=why)
                    for path, (kind, why) in self.unreturned.items()
                },
            },
            execution_time=round(elapsed, 4),
        )


@contextmanager
def timed(phases: dict[str, float], name: str) -> Iterator[None]:
    """Seconds the block took, added to `phases[name]` (the run's phase timings)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = round(phases.get(name, 0.0) + time.perf_counter() - started, 4)
