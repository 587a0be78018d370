"""The engine's messages lose its host paths before a caller sees them; the caller's own
container paths stay, so the message still says what to fix."""

from __future__ import annotations

import pytest

from backends.docker.errors import ENGINE_PATH, scrub


@pytest.mark.parametrize(
    ("message", "kept"),
    [
        (
            "lstat /var/lib/docker/overlay2/6de4/merged/a: invalid argument",
            "lstat <engine path>: invalid argument",
        ),
        (
            'error mounting "/var/lib/docker/volumes/oneoff-1/_data/0" to rootfs at "/etc": mount '
            "/var/lib/docker/volumes/oneoff-1/_data/0:/etc (via /proc/self/fd/6), flags: 0x5000",
            'error mounting "<engine path>" to rootfs at "/etc": mount <engine path> '
            "(via <engine path>), flags: 0x5000",
        ),
        ("open /data/docker/containers/ab12/hostname: denied", "open <engine path>: denied"),
        ("/run/containerd/io.containerd.runtime.v2.task/moby/x/log.json", ENGINE_PATH),
        ("Cannot mkdir: /bin/sh is not a directory", "Cannot mkdir: /bin/sh is not a directory"),
    ],
)
def test_engine_paths_are_removed_and_container_paths_kept(message: str, kept: str) -> None:
    assert scrub(message) == kept
