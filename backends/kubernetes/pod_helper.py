"""`python -m backends.kubernetes.pod_helper` (also `oneoff-runner pod-helper`): what the
runner's own image does inside a Kubernetes run pod. Run as a module, it loads only what it
needs (about 19 MiB of Python; the `oneoff-runner` command loads the servers too, 52 MiB).

`unpack` (init container): every file and directory path's content, from the run's Secret
(mounted at /oneoff/input) into the shared `emptyDir` (/oneoff/content/<index>). Archives are
judged by the same rule as the runner's (`runner.archives.check_tar_gz`: whatever version of
Python the image has), then unpacked with tarfile's `data` filter as a second line.
`collect` (native sidecar): blocks SIGTERM, says it is ready (the file its startupProbe looks
for, so the run's container starts only then and a SIGTERM can never come before it is
awaited), waits for the SIGTERM the kubelet sends once the run's container has exited, then
writes the `response: true` paths to stdout as JSON records, one per line, where the runner
reads them from the pod log as they stream: `{"begin": n}` first (a log rotated by the kubelet
lacks it), per path `{"path", "kind"}` then `{"data": base64}` chunks of at most 48 KiB, and
`{"done": true}` last (a log cut short lacks it); past the limit an `{"error"}` record ends it.
Memory stays small whatever the size: directories are packed as a stream.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any, BinaryIO, cast

from runner.archives import Budget, check_tar_gz, pack_directory_into, unpack_directory
from runner.errors import InvalidRequest

ROOT = Path(os.environ.get("ONEOFF_POD_ROOT", "/oneoff"))
READY = ".collect-ready"
CHUNK_BYTES = 48 * 1024  # 64 KiB of base64 per log line


def main(arguments: list[str]) -> int:
    command, steps = arguments[0], json.loads(arguments[1])
    content, source = ROOT / "content", ROOT / "input"
    if command == "unpack":
        try:
            unpack(steps, source, content)
        except InvalidRequest as exc:
            sys.stderr.write(f"unpack: refused: {exc.message}\n")
            return 1
        return 0
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    (content / READY).touch()
    sys.stderr.write("collect: ready; the response paths go out on SIGTERM\n")
    sys.stderr.flush()
    signal.sigwait({signal.SIGTERM})
    return collect(steps, content, int(arguments[2]))


def unpack(steps: list[dict[str, Any]], source: Path, target: Path) -> None:
    for step in steps:
        place = target / str(step["index"])
        place.mkdir(parents=True, exist_ok=True)
        data = (source / f"m{step['index']}").read_bytes() if step["content"] else None
        if step["kind"] == "file":
            file = place / "file"
            file.write_bytes(data or b"")
            file.chmod(step["mode"])
        elif data is not None:
            # the runner checked and bounded it already; a second check costs one read
            check_tar_gz(data, f"volumes[{step['path']!r}].content", Budget(2**62, 2**62))
            unpack_directory(data, place)
        # the run's uid may differ from whoever writes here: writable paths are writable to it
        place.chmod(0o777 if step["writable"] else 0o755)


class OverLimit(Exception):
    """The returned paths exceed their limit."""


class Records(io.RawIOBase):
    """Bytes written to it leave as `{"data": base64}` lines of at most `CHUNK_BYTES`, counted
    against a budget: memory stays small, and no log line grows past what the kubelet keeps."""

    def __init__(self, out: BinaryIO, budget: int) -> None:
        super().__init__()
        self.out, self.left = out, budget
        self.pending = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        size = len(data)
        self.left -= size
        if self.left < 0:
            raise OverLimit
        self.pending += data
        while len(self.pending) >= CHUNK_BYTES:
            self.record(data=base64.b64encode(self.pending[:CHUNK_BYTES]).decode())
            del self.pending[:CHUNK_BYTES]
        return size

    def drain(self) -> None:
        if self.pending:
            self.record(data=base64.b64encode(self.pending).decode())
            self.pending.clear()

    def record(self, **fields: Any) -> None:
        self.out.write(json.dumps(fields).encode() + b"\n")


def collect(
    steps: list[dict[str, Any]], root: Path, limit: int, out: BinaryIO | None = None
) -> int:
    """Writes the records; returns 1 when the paths exceed `limit` bytes (an `error` record
    then ends the log)."""
    records = Records(out or sys.stdout.buffer, limit)
    responses = [step for step in steps if step["response"]]
    records.record(begin=len(responses))
    try:
        for step in responses:
            place = root / str(step["index"])
            records.record(path=step["path"], kind=step["kind"])
            if step["kind"] == "file":
                with (place / "file").open("rb") as source:
                    shutil.copyfileobj(source, records, CHUNK_BYTES)
            else:
                pack_directory_into(place, cast(BinaryIO, records))
            records.drain()
    except OverLimit:
        records.record(error="over the limit", limit=limit)
        records.out.flush()
        return 1
    records.record(done=True)
    records.out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
