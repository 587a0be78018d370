"""The interface every backend implements, and the labels everything it creates carries.

Synchronous on purpose: both SDKs (docker, kubernetes) block. The service calls these methods
in worker threads, never on the event loop.
"""

from __future__ import annotations

from typing import Protocol

from runner.models import ContainerInfo, Health, ImageInfo
from runner.spec import Outcome, RunSpec, VolumeFill

LABEL_PREFIX = "oneoff-runner"
MANAGED = f"{LABEL_PREFIX}.managed"
RUN_ID = f"{LABEL_PREFIX}.run-id"
INSTANCE = f"{LABEL_PREFIX}.instance"
DEADLINE = f"{LABEL_PREFIX}.deadline"
ROLE = f"{LABEL_PREFIX}.role"


class Backend(Protocol):
    name: str

    def run(self, spec: RunSpec) -> Outcome:
        """Run one container to its end and remove everything made for it, on every path.

        Raises a `RunnerError` when the run could not happen. Returns once the container has
        exited, timed out (killed) or was cancelled via `cancel`.
        """
        ...

    def cancel(self, run_id: str) -> None:
        """Kill the run's container if it is running; `run` then cleans up and returns."""
        ...

    def create_volume(self, fill: VolumeFill) -> str:
        """Create (or reuse) a named volume and fill it; returns a sentence for the caller."""
        ...

    def health(self) -> Health: ...

    def list_containers(self, *, all_states: bool, managed_only: bool) -> list[ContainerInfo]: ...

    def list_images(self, *, reference: str | None) -> list[ImageInfo]: ...

    def reap_orphans(self, *, startup: bool) -> int:
        """Remove leftovers: past their deadline, or (at startup) this instance's own.

        Returns how many objects were removed.
        """
        ...

    def close(self) -> None: ...
