"""What the core needs from a backend: the `Backend` protocol, and the labels everything a
backend creates carries (the core reserves their namespace; callers can never set them).

The core defines this and never imports `backends/`; each backend implements it, and the apps
choose one (`backends.get_backend`). Synchronous on purpose: both SDKs (docker, kubernetes)
block. The service calls these methods in worker threads, never on the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from runner.engine_models import ContainerInfo, Health, ImageInfo, VolumeInfo
from runner.models import RESERVED_LABEL_PREFIX
from runner.spec import (
    Outcome,
    PullSpec,
    RunControl,
    RunRecord,
    RunSpec,
    VolumeFill,
    VolumeState,
)

LABEL_PREFIX = RESERVED_LABEL_PREFIX
MANAGED = f"{LABEL_PREFIX}.managed"
RUN_ID = f"{LABEL_PREFIX}.run-id"
INSTANCE = f"{LABEL_PREFIX}.instance"
DEADLINE = f"{LABEL_PREFIX}.deadline"
ROLE = f"{LABEL_PREFIX}.role"
TENANT = f"{LABEL_PREFIX}.tenant"
"""The tenant's label (`runner.tenancy`): the keyed hash, never the token."""
CREATED_BY = f"{LABEL_PREFIX}.created-by"
VOLUME_API = "volume-api"
"""`CREATED_BY` of volumes made through POST /volume: the only ones a tenant owns."""


class OutputStream(Protocol):
    """(stream name, bytes) pairs, released when iterated to the end; `stop`, from another
    thread, makes the iteration end."""

    def __iter__(self) -> Iterator[tuple[str, bytes]]: ...

    def stop(self) -> None: ...


class Backend(Protocol):
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

    # ---- async runs: state kept in the backend, so any runner on it answers for them ----------

    def launch(self, spec: RunSpec, control: RunControl, idempotency_key: str | None) -> None:
        """Pull, prepare and start the run, then return, leaving it running; a failure removes
        what was made and raises a `RunnerError`."""
        ...

    def wait_run(self, run_id: str) -> None:
        """Block until the run stops, killing it when its timeout passes."""
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

    def record_run(self, record: RunRecord) -> None:
        """Keep the end of a run that has nothing else left (cancelled, failed to start). The
        first end kept counts: recording a run again changes nothing."""
        ...

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

    def health(self) -> Health: ...

    def list_containers(
        self, *, tenant: str, all_states: bool, managed_only: bool
    ) -> list[ContainerInfo]:
        """The tenant's runs (by its label); with `managed_only` false, everything there."""
        ...

    def list_images(self, *, reference: str | None) -> list[ImageInfo]: ...

    def pull_image(self, spec: PullSpec, control: RunControl) -> ImageInfo:
        """Pull the image (reporting layer progress as events), stopping when `control` is
        cancelled; the image as the engine now has it."""
        ...

    def renew_lease(self) -> None:
        """Renew this runner's claim on what it makes (`backends.leases`); the service calls
        it at start and every third of `lease_seconds`."""
        ...

    def reap_orphans(self) -> int:
        """Remove leftovers: what runners no longer holding their lease made, and anything past
        its deadline. Returns how many objects were removed.
        """
        ...

    def close(self) -> None:
        """Release the lease: what is left then is any runner's to remove."""
        ...


@contextmanager
def timed(phases: dict[str, float], name: str) -> Iterator[None]:
    """Seconds the block took, added to `phases[name]` (the run's phase timings)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = round(phases.get(name, 0.0) + time.perf_counter() - started, 4)
