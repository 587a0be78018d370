"""`FakeBackend`: a backend driven by a plain function, for unit tests of the service and apps.

Like httpx's MockTransport: the test says what a run returns (or raises); everything above the
backend is the real code. Behaviour of the Docker backend itself is tested only on a real engine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from runner.models import ContainerInfo, Health, ImageInfo
from runner.spec import Outcome, RunSpec, VolumeFill


def outcome(
    exit_code: int = 0, stdout: bytes = b"", stderr: bytes = b"", **fields: object
) -> Outcome:
    values: dict[str, object] = {
        "exit_code": exit_code,
        "stdout": stdout,
        "stderr": stderr,
        "stdout_truncated": False,
        "stderr_truncated": False,
        "timed_out": False,
        "oom_killed": False,
    }
    values.update(fields)
    return Outcome(**values)  # type: ignore[arg-type]


class FakeBackend:
    name = "fake"

    def __init__(self, handler: Callable[[RunSpec], Outcome] = lambda spec: outcome()) -> None:
        self.handler = handler
        self.specs: list[RunSpec] = []
        self.cancelled: list[str] = []
        self.fills: list[VolumeFill] = []
        self.cancel_called = threading.Event()

    def run(self, spec: RunSpec) -> Outcome:
        self.specs.append(spec)
        return self.handler(spec)

    def cancel(self, run_id: str) -> None:
        self.cancelled.append(run_id)
        self.cancel_called.set()

    def create_volume(self, fill: VolumeFill) -> str:
        self.fills.append(fill)
        return f"volume {fill.name!r} created"

    def health(self) -> Health:
        return Health(backend=self.name, version="0")

    def list_containers(self, *, all_states: bool, managed_only: bool) -> list[ContainerInfo]:
        return []

    def list_images(self, *, reference: str | None) -> list[ImageInfo]:
        return []

    def reap_orphans(self, *, startup: bool) -> int:
        return 0

    def close(self) -> None:
        pass
