"""Peak memory of the Kubernetes pod helper, run as the run pod runs it (`HELPER_COMMAND`, with
this environment's python): a process of its own, its peak RSS read from the kernel when it
exits (`wait4`'s `ru_maxrss`). Two workloads at the bounds:

- collect: directories holding `RUNNER_KUBE_RETURN_LIMIT_BYTES` (7 MiB by default) of random
  bytes in many files, streamed out as log records (to /dev/null, as the kubelet reads them);
- unpack: the largest content a run can carry (one Secret, 1 MiB of base64) as a tar.gz of
  random bytes plus a file of zeros that unpacks to `UNPACKED_ZEROS_BYTES`.

`uv run python -m bench.pod_helper` prints the figures against the helpers' memory request and
limit (backends/kubernetes/manifests.py); tests/kubernetes/test_pod_helper_memory.py holds the
peak under the limit.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any

from backends.kubernetes.manifests import HELPER_COMMAND, HELPER_RESOURCES
from runner.settings import Settings
from runner.sizes import parse_size

MiB = 1024 * 1024
SECRET_CONTENT_BYTES = 768 * 1024  # 1 MiB of base64, the most one Secret holds
UNPACKED_ZEROS_BYTES = 256 * MiB
TIME = "/usr/bin/time"  # GNU time (Debian's `time`, installed by scripts/ci-provision.sh)
HELPER = [sys.executable, *HELPER_COMMAND[1:]]  # as in the pod, with this environment's python


def mebibytes(quantity: str) -> int:
    """Bytes in a Kubernetes quantity in Mi, as the manifests write the helpers' memory."""
    return parse_size(quantity.removesuffix("Mi") + "m")


def peak_rss(arguments: list[str], root: Path, *, terminate: bool = False) -> int:
    """Peak RSS in bytes of one pod helper process, as GNU time reports it. (Not `wait4` from
    here: a child forked from this process counts this process's memory as its own until it
    execs.) `terminate`: a collect, which waits for the SIGTERM the kubelet sends once the
    run's container has exited; it goes to the helper, not to `time`."""
    env = {**os.environ, "ONEOFF_POD_ROOT": str(root)}
    report = root / "peak-rss"
    command = [TIME, "-f", "%M", "-o", str(report), *HELPER, *arguments]
    with open(os.devnull, "wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.PIPE)
        if terminate:
            assert process.stderr is not None
            process.stderr.readline()  # "collect: ready; ...", written once it awaits SIGTERM
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
            os.kill(int(children.split()[0]), signal.SIGTERM)
        _, errors = process.communicate()
    assert process.returncode == 0, f"the helper failed: {errors.decode(errors='replace')}"
    return int(report.read_text().split()[-1]) * 1024  # KiB


def collect_peak(limit: int) -> int:
    """A collect of `limit` bytes of random content: one directory of 1 MiB files."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        place = root / "content" / "0"
        place.mkdir(parents=True)
        left, index = limit - 64 * 1024, 0  # room for the tar headers within the bound
        while left > 0:
            (place / f"f{index}.bin").write_bytes(os.urandom(min(MiB, left)))
            left, index = left - MiB, index + 1
        step = {"index": 0, "path": "/out", "kind": "directory", "response": True}
        return peak_rss(["collect", json.dumps([step]), str(limit)], root, terminate=True)


def unpack_peak(zeros: int = UNPACKED_ZEROS_BYTES) -> int:
    """An unpack of the largest content a run carries: random bytes and `zeros` bytes of
    zeros (gzip packs them about 1000 to 1)."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "input").mkdir()
        (root / "input" / "m0").write_bytes(_largest_archive(zeros))
        step = {
            "index": 0,
            "path": "/in",
            "kind": "directory",
            "mode": 0o644,
            "content": True,
            "writable": True,
            "response": False,
        }
        return peak_rss(["unpack", json.dumps([step])], root)


def _largest_archive(zeros: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        noise = os.urandom(SECRET_CONTENT_BYTES - zeros // 900 - 32 * 1024)
        member = tarfile.TarInfo("noise.bin")
        member.size = len(noise)
        archive.addfile(member, io.BytesIO(noise))
        padding = tarfile.TarInfo("zeros.bin")
        padding.size = zeros
        archive.addfile(padding, _Zeros(zeros))
    data = buffer.getvalue()
    assert len(data) <= SECRET_CONTENT_BYTES, len(data)
    return data


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), self.left)
        buffer[:size] = bytes(size)
        self.left -= size
        return size


def baseline_peak() -> int:
    """The same command doing nothing but start (`pod-helper unpack` with no steps)."""
    with tempfile.TemporaryDirectory() as scratch:
        return peak_rss(["unpack", "[]"], Path(scratch))


def main() -> None:
    limit = Settings(_env_file=None).kube_return_limit_bytes  # type: ignore[call-arg]
    figures = {
        "start_only_mib": baseline_peak() / MiB,
        "collect_at_bound_mib": collect_peak(limit) / MiB,
        "unpack_largest_mib": unpack_peak() / MiB,
        "request": HELPER_RESOURCES["requests"]["memory"],
        "limit": HELPER_RESOURCES["limits"]["memory"],
        "python": sys.version.split()[0],
        "zlib": zlib.ZLIB_VERSION,
    }
    sys.stdout.write(json.dumps({k: _rounded(v) for k, v in figures.items()}, indent=1) + "\n")


def _rounded(value: object) -> object:
    return round(value, 1) if isinstance(value, float) else value


if __name__ == "__main__":
    main()
