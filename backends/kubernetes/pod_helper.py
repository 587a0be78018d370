"""`oneoff-runner pod-helper`: what the runner's own image does inside a Kubernetes run pod.

`unpack` (init container): every file and directory path's content, from the run's Secret
(mounted at /oneoff/input) into the shared `emptyDir` (/oneoff/content/<index>). Archives are
judged by the same rule as the runner's (`runner.archives.check_tar_gz`: whatever version of
Python the image has), then unpacked with tarfile's `data` filter as a second line.
`collect` (native sidecar): blocks SIGTERM, says it is ready (the file its startupProbe looks
for, so the run's container starts only then and a SIGTERM can never come before it is
awaited), waits for the SIGTERM the kubelet sends once the run's container has exited, then
writes each `response: true` path to stdout as one JSON line (`{"path", "kind", "content":
base64}`), where the runner reads it from the pod log.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from runner.archives import Budget, check_tar_gz, pack_directory, unpack_directory
from runner.errors import InvalidRequest

ROOT = Path(os.environ.get("ONEOFF_POD_ROOT", "/oneoff"))
READY = ".collect-ready"


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


def collect(steps: list[dict[str, Any]], root: Path, limit: int) -> int:
    """Returns 1 when the paths exceed `limit` bytes (nothing is written then)."""
    lines = []
    for step in steps:
        if not step["response"]:
            continue
        place = root / str(step["index"])
        if step["kind"] == "file":
            content = (place / "file").read_bytes()
        else:
            content = pack_directory(place)
        limit -= len(content)
        if limit < 0:
            sys.stdout.write(json.dumps({"error": "response over max_response_bytes"}) + "\n")
            return 1
        encoded = base64.b64encode(content).decode()
        lines.append(json.dumps({"path": step["path"], "kind": step["kind"], "content": encoded}))
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()
    return 0
