"""What a user would do without the runner: the bare SDK sequence, and the docker CLI.

Both apply the limits the runner applies by default (memory with no extra swap, one CPU, a pids
limit, no-new-privileges, no network), so the comparison is of the runner's overhead, not of
the cost of the limits themselves.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile

import docker

IMAGE = "oneoff-test/busybox:latest"
MEMORY = 512 * 1024 * 1024
PIDS = 512
LIMIT_FLAGS = [
    "--network=none",
    f"--memory={MEMORY}",
    f"--memory-swap={MEMORY}",
    "--cpus=1",
    f"--pids-limit={PIDS}",
    "--security-opt=no-new-privileges",
]


def sdk_run(api: docker.APIClient, command: list[str], data: bytes | None = None) -> bytes:
    """create → (put_archive) → start → wait → logs → (get_archive) → remove."""
    host_config = api.create_host_config(
        network_mode="none",
        mem_limit=MEMORY,
        memswap_limit=MEMORY,
        nano_cpus=1_000_000_000,
        pids_limit=PIDS,
        security_opt=["no-new-privileges"],
    )
    container = api.create_container(IMAGE, command=command, host_config=host_config)["Id"]
    try:
        if data is not None:
            api.put_archive(container, "/", data)
        api.start(container)
        api.wait(container)
        output: bytes = api.logs(container, stdout=True, stderr=True)
        if data is not None:
            chunks, _ = api.get_archive(container, "/data")
            output = b"".join(chunks)
        return output
    finally:
        api.remove_container(container, force=True)


def cli_run(command: list[str]) -> None:
    subprocess.run(
        ["docker", "run", "--rm", "--pull=never", *LIMIT_FLAGS, IMAGE, *command],
        check=True,
        capture_output=True,
    )


def directory_tar(size: int) -> bytes:
    """A tar of `data/` holding `size` bytes that do not compress (like real binaries)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        folder = tarfile.TarInfo("data")
        folder.type = tarfile.DIRTYPE
        folder.mode = 0o755
        archive.addfile(folder)
        info = tarfile.TarInfo("data/blob.bin")
        info.size = size
        archive.addfile(info, io.BytesIO(os.urandom(size)))
    return out.getvalue()
