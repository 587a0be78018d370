"""What the core needs from a backend: the `Backend` protocol, in groups.

The core defines this and never imports `backends/`; each backend implements it, and the apps
choose one (`backends.get_backend`). Synchronous on purpose: both SDKs (docker, kubernetes)
block. The service calls these methods in worker threads, never on the event loop.

A backend must implement `Runs` and `Upkeep`. Of `KeptRuns`, `Volumes` and `Inventory` it may
leave any method unsupported: it raises `runner.errors.Unsupported`, which callers get as a 501
(Kubernetes does so for `list_images` and `pull_image`); a listing may answer empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from runner.engine_models import ContainerInfo, Health, ImageInfo, VolumeEntry, VolumeInfo
from runner.private_images import Grants
from runner.spec import (
    Outcome,
    PullSpec,
    RunControl,
    RunRecord,
    RunSpec,
    VolumeFill,
    VolumeState,
)


class OutputStream(Protocol):
    """(stream name, bytes) pairs, released when iterated to the end; `stop`, from another
    thread, makes the iteration end."""

    def __iter__(self) -> Iterator[tuple[str, bytes]]: ...

    def stop(self) -> None: ...


class Runs(Protocol):
    """Runs to their end (`POST /run`, MCP `run_container`), and the backend's health."""

    name: str

    def run(self, spec: RunSpec, control: RunControl) -> Outcome:
        """Run one container to its end and remove everything made for it, on every path.

        Raises a `RunnerError` when the run could not happen. Returns once the container has
        exited, timed out (killed) or was cancelled via `cancel`.
        """
        ...

    def cancel(self, run_id: str) -> None:
        """Kill the run's container if it is running; `run` then cleans up and returns."""
        ...

    def health(self) -> Health: ...


class KeptRuns(Protocol):
    """Async runs (`POST /runs`, MCP tasks): their state kept in the backend, so that any
    runner on it answers for them."""

    def launch(self, spec: RunSpec, control: RunControl, idempotency_key: str | None) -> None:
        """Pull, prepare and start the run, then return, leaving it running; a failure removes
        what was made and raises a `RunnerError`."""
        ...

    def wait_run(self, run_id: str) -> None:
        """Block until the run stops, killing it when its timeout passes (or, on Docker, when it
        writes past its disk limit). Its end is kept meanwhile (`settle_run`)."""
        ...

    def settle_run(self, run_id: str, timeout: float) -> None:
        """Until the end of a stopped run is kept, at most `timeout` seconds: on Docker its
        container is removed then, so the volumes it mounted are free. At once when this
        runner is keeping nothing of the run."""
        ...

    def find_runs(
        self, *, tenant: str | None, run_id: str | None, idempotency_key: str | None
    ) -> list[RunRecord]:
        """Async runs the backend still keeps (running, finished, or recorded), oldest first;
        only the tenant's (by its label), or every tenant's for None."""
        ...

    def run_output(self, run_id: str, *, follow: bool) -> OutputStream:
        """The run's output from its start; with `follow`, until it stops."""
        ...

    def collect_run(self, run_id: str) -> Outcome:
        """A finished run's result (output up to the caps, response paths)."""
        ...

    def run_file(self, run_id: str, path: str) -> tuple[str, Iterator[bytes]]:
        """A finished run's `response: true` path as (kind, stream): a file's bytes, or a
        plain tar of a directory with names relative to it."""
        ...

    def discard_run(self, run_id: str, record: RunRecord | None = None) -> None:
        """Kill the run if it runs and remove everything made for it, keeping `record` (when
        given) before anything that shows the run goes: a caller never sees it vanish."""
        ...

    def forget_run(self, run_id: str) -> None:
        """Remove a finished run and all it kept (its record, result, returned files): from
        then on it is not found."""
        ...

    def record_run(self, record: RunRecord) -> None:
        """Keep the end of a run that has nothing else left (cancelled, failed to start). The
        first end kept counts: recording a run again changes nothing."""
        ...

    def mark_delivered(self, run_id: str, tenant: str) -> None:
        """Keep, where every runner sees it, that an answer delivered the finished run's
        result: its record then says `delivered`. Marking it again changes nothing."""
        ...


class Volumes(Protocol):
    """Named volumes (`POST /volume` and friends; runs mount them)."""

    def create_volume(self, fill: VolumeFill) -> str:
        """Create (or reuse) a named volume and fill it; returns a sentence for the caller."""
        ...

    def volume_state(self, name: str) -> VolumeState | None:
        """Who owns the named volume and what it binds; None when there is none."""
        ...

    def list_volumes(self, *, tenant: str) -> list[VolumeInfo]:
        """The named volumes the tenant created through the API (by their labels), by name."""
        ...

    def remove_volume(self, name: str) -> None:
        """Remove a named volume (the service has checked it is the caller's); `Conflict` when
        a container still uses it."""
        ...

    def volume_files(self, name: str, tenant: str, path: str) -> tuple[int, list[VolumeEntry]]:
        """What the volume holds under `path` (relative, checked): what it uses on disk as its
        size bound counts it, and its entries; `Unsupported` where a backend cannot."""
        ...

    def read_volume_file(self, name: str, tenant: str, path: str, max_bytes: int) -> bytes:
        """One file of the volume, never through a symlink."""
        ...

    def write_volume_file(self, name: str, tenant: str, path: str, data: bytes, mode: int) -> int:
        """Write one file into the volume, within RUNNER_MAX_VOLUME_BYTES; its use after."""
        ...


class Inventory(Protocol):
    """What is on the engine besides runs: containers and images."""

    def list_containers(
        self, *, tenant: str, all_states: bool, managed_only: bool
    ) -> list[ContainerInfo]:
        """The tenant's runs (by its label); with `managed_only` false, everything there."""
        ...

    def list_images(self, *, reference: str | None) -> list[ImageInfo]: ...

    def image_grants(self) -> Grants:
        """Who may use the private images on the engine (`runner.private_images`); empty
        where the backend keeps no grants."""
        ...

    def pull_image(self, spec: PullSpec, control: RunControl) -> ImageInfo:
        """Pull the image (reporting layer progress as events), stopping when `control` is
        cancelled; the image as the engine now has it."""
        ...


class Upkeep(Protocol):
    """What keeps a shared engine or cluster clean: this runner's lease, and the reaper."""

    def renew_lease(self) -> None:
        """Renew this runner's claim on what it makes (`backends.leases`); the service calls
        it at start and every third of `lease_seconds`."""
        ...

    def reap_orphans(self) -> int:
        """Remove leftovers: what runners no longer holding their lease made, and anything past
        its deadline. Returns how many objects were removed."""
        ...

    def close(self) -> None:
        """Release the lease: what is left then is any runner's to remove."""
        ...


class Backend(Runs, KeptRuns, Volumes, Inventory, Upkeep, Protocol):
    """A backend: every group (see the module docstring for which it may leave unsupported)."""
