"""The pod helper as the kubelet drives it: a process that collects on SIGTERM."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

from backends.kubernetes import pod_helper
from backends.kubernetes.manifests import HELPER_COMMAND
from backends.kubernetes.returned import ReturnLimit, read_returned
from tests.helpers import ROOT, tar_gz, untar_gz

STEPS = [
    {
        "index": 0,
        "path": "/in.txt",
        "kind": "file",
        "mode": 0o600,
        "content": True,
        "writable": False,
        "response": False,
    },
    {
        "index": 1,
        "path": "/out",
        "kind": "directory",
        "mode": 0o644,
        "content": False,
        "writable": True,
        "response": True,
    },
]


def helper(root: Path, *arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *HELPER_COMMAND[1:], *arguments],  # the command run pods use
        cwd=ROOT,
        env={**os.environ, "ONEOFF_POD_ROOT": str(root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_unpack_then_collect_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "m0").write_bytes(b"secret\n")
    unpacked = helper(tmp_path, "unpack", json.dumps(STEPS))
    unpacked.communicate(timeout=60)
    assert unpacked.returncode == 0
    content = tmp_path / "content"
    assert (content / "0" / "file").read_bytes() == b"secret\n"
    assert (content / "0" / "file").stat().st_mode & 0o777 == 0o600
    assert (content / "1").stat().st_mode & 0o777 == 0o777  # writable for the run's uid
    (content / "1" / "made.txt").write_text("by the run\n")

    collector = helper(tmp_path, "collect", json.dumps(STEPS), "100000")
    assert collector.stderr is not None
    assert "ready" in collector.stderr.readline()  # SIGTERM is awaited from here on
    assert (content / pod_helper.READY).exists()  # what the startupProbe looks for
    collector.send_signal(signal.SIGTERM)
    output, _ = collector.communicate(timeout=60)
    assert collector.returncode == 0
    returned = read_returned(
        [output.encode()], ReturnLimit(100000, "RUNNER_KUBE_RETURN_LIMIT_BYTES")
    )
    kind, data = returned["/out"]
    assert kind == "directory"
    assert untar_gz(data) == {"made.txt": b"by the run\n"}


def test_collect_streams_in_bounded_records(tmp_path: Path) -> None:
    content = tmp_path / "content"
    (content / "1").mkdir(parents=True)
    (content / "1" / "big.bin").write_bytes(os.urandom(300 * 1024))
    out = io.BytesIO()
    assert pod_helper.collect(STEPS, content, 1024 * 1024, out) == 0
    lines = out.getvalue().splitlines()
    assert json.loads(lines[0]) == {"begin": 1} and json.loads(lines[-1]) == {"done": True}
    assert max(len(line) for line in lines) <= 64 * 1024 + 16
    assert untar_gz(
        read_returned([out.getvalue()], ReturnLimit(1024 * 1024, "RUNNER_KUBE_RETURN_LIMIT_BYTES"))[
            "/out"
        ][1]
    )["big.bin"]


def test_collect_refuses_paths_over_the_limit(tmp_path: Path) -> None:
    content = tmp_path / "content"
    (content / "1").mkdir(parents=True)
    (content / "1" / "big.bin").write_bytes(os.urandom(4096))
    out = io.BytesIO()
    assert pod_helper.collect(STEPS, content, 100, out) == 1
    assert json.loads(out.getvalue().splitlines()[-1])["error"]


def test_unpack_refuses_writing_through_a_hard_link_to_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    links = [tarfile.TarInfo("s"), tarfile.TarInfo("h"), tarfile.TarInfo("h/evil")]
    links[0].type, links[0].linkname = tarfile.SYMTYPE, str(outside)
    links[1].type, links[1].linkname = tarfile.LNKTYPE, "s"
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "m1").write_bytes(tar_gz({}, extra=links))
    steps = [{**STEPS[1], "content": True}]
    unpacked = helper(tmp_path, "unpack", json.dumps(steps))
    _, errors = unpacked.communicate(timeout=60)
    assert unpacked.returncode == 1
    assert "'h/evil' would be written through a symlink" in errors
    assert list(outside.iterdir()) == []


def test_the_pod_helper_loads_no_pydantic():
    """It runs in every run pod within a small memory request (measured by
    tests/kubernetes/test_pod_helper_memory.py): the API's models are none of its business."""
    probe = (
        "import sys, backends.kubernetes.pod_helper; "
        "print(sorted(m for m in sys.modules if m.startswith(('pydantic', 'runner.models'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout == "[]\n"
