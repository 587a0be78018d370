"""`FakeBackend`: a backend driven by a plain function, for unit tests of the service and apps.

Like httpx's MockTransport: the test says what a run returns (or raises); everything above the
backend is the real code. Behaviour of the Docker backend itself is tested only on a real engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from runner.engine_models import ContainerInfo, Health, ImageInfo, VolumeEntry, VolumeInfo
from runner.errors import NotFound
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


class FakeOutput:
    def __init__(self, chunks: list[tuple[str, bytes]]) -> None:
        self.chunks = [(kind, data) for kind, data in chunks if data]

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        return iter(self.chunks)

    def stop(self) -> None:
        pass


Handler = Callable[[RunSpec, RunControl], Outcome]
"""What a run or launch returns (or raises), given what the backend is asked."""


class FakeBackend:
    name = "fake"

    def __init__(self, handler: Handler = lambda spec, control: outcome()) -> None:
        self.handler = handler
        self.specs: list[RunSpec] = []
        self.cancelled: list[str] = []
        self.fills: list[VolumeFill] = []
        self.cancel_called = threading.Event()
        self.launched: dict[str, tuple[str | None, Outcome, float]] = {}
        self.recorded: dict[str, RunRecord] = {}
        self.tenants: dict[str, str] = {}
        self.volumes: dict[str, VolumeState] = {}
        self.files: dict[tuple[str, str], bytes] = {}
        self.images: list[ImageInfo] = []
        self.grants: dict[str, frozenset[str]] = {}
        """Image id → labels of the tenants granted it (`runner.private_images`)."""
        self.listings: list[tuple[str, bool]] = []
        """(tenant, managed_only) of each container listing asked."""

    def run(self, spec: RunSpec, control: RunControl) -> Outcome:
        self.specs.append(spec)
        return self.handler(spec, control)

    def cancel(self, run_id: str) -> None:
        self.cancelled.append(run_id)
        self.cancel_called.set()

    # async runs: finished as soon as launched, kept in memory

    def launch(self, spec: RunSpec, control: RunControl, idempotency_key: str | None) -> None:
        self.specs.append(spec)
        result = self.handler(spec, control)
        self.launched[spec.run_id] = (idempotency_key, result, time.time())
        self.tenants[spec.run_id] = spec.tenant

    def wait_run(self, run_id: str) -> None:
        pass

    def settle_run(self, run_id: str, timeout: float) -> None:
        pass

    def find_runs(
        self, *, tenant: str | None, run_id: str | None, idempotency_key: str | None
    ) -> list[RunRecord]:
        found = [
            RunRecord(
                run_id=ran,
                state="succeeded" if result.exit_code == 0 else "failed",
                image="fake",
                created_at=at,
                started_at=at,
                finished_at=at,
                exit_code=result.exit_code,
                tenant=self.tenants[ran],
            )
            for ran, (key, result, at) in self.launched.items()
            if run_id in (None, ran) and idempotency_key in (None, key)
        ]
        if idempotency_key is None:
            found += [record for ran, record in self.recorded.items() if run_id in (None, ran)]
        return [record for record in found if tenant in (None, record.tenant)]

    def run_output(self, run_id: str, *, follow: bool) -> FakeOutput:
        if run_id not in self.launched:
            raise NotFound(f"no container for {run_id}")
        result = self.launched[run_id][1]
        return FakeOutput([("stdout", result.stdout), ("stderr", result.stderr)])

    def collect_run(self, run_id: str) -> Outcome:
        return self.launched[run_id][1]

    def discard_run(self, run_id: str, record: RunRecord | None = None) -> None:
        self.launched.pop(run_id, None)
        if record is not None:
            self.record_run(record)

    def forget_run(self, run_id: str) -> None:
        self.launched.pop(run_id, None)
        self.recorded.pop(run_id, None)

    def record_run(self, record: RunRecord) -> None:
        self.recorded[record.run_id] = record

    def mark_delivered(self, run_id: str, tenant: str) -> None:
        if run_id in self.recorded:
            self.recorded[run_id].delivered = True

    def create_volume(self, fill: VolumeFill) -> str:
        self.fills.append(fill)
        self.volumes[fill.name] = VolumeState(tenant=fill.tenant)
        return f"volume {fill.name!r} created"

    def volume_state(self, name: str) -> VolumeState | None:
        return self.volumes.get(name)

    def list_volumes(self, *, tenant: str) -> list[VolumeInfo]:
        names = sorted(name for name, state in self.volumes.items() if state.tenant == tenant)
        return [VolumeInfo(name=name, driver="local") for name in names]

    def remove_volume(self, name: str) -> None:
        del self.volumes[name]

    def volume_files(self, name: str, tenant: str, path: str) -> tuple[int, list[VolumeEntry]]:
        found = {key[1]: data for key, data in self.files.items() if key[0] == name}
        entries = [
            VolumeEntry(path=p, type="file", size=len(d), mode="0644") for p, d in found.items()
        ]
        return sum(len(data) for data in found.values()), entries

    def read_volume_file(self, name: str, tenant: str, path: str, max_bytes: int) -> bytes:
        if (name, path) not in self.files:
            raise NotFound(f"path: nothing at {path!r}", field="path")
        return self.files[name, path]

    def write_volume_file(self, name: str, tenant: str, path: str, data: bytes, mode: int) -> int:
        self.files[name, path] = data
        return self.volume_files(name, tenant, "")[0]

    def health(self) -> Health:
        return Health(backend=self.name, version="0")

    def list_containers(
        self, *, tenant: str, all_states: bool, managed_only: bool
    ) -> list[ContainerInfo]:
        self.listings.append((tenant, managed_only))
        return []

    def list_images(self, *, reference: str | None) -> list[ImageInfo]:
        return list(self.images)

    def pull_image(self, spec: PullSpec, control: RunControl) -> ImageInfo:
        return ImageInfo(id="sha256:fake", tags=[spec.image], size=0)

    def image_grants(self) -> Grants:
        return dict(self.grants)

    def renew_lease(self) -> None:
        pass

    def reap_orphans(self) -> int:
        return 0

    def close(self) -> None:
        pass
