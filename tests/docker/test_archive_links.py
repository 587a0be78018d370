"""A hard link to a symlink is that symlink under another name: writing through it is refused
like writing through the symlink, so no member lands outside its own path."""

from __future__ import annotations

import tarfile

from fastapi.testclient import TestClient

from tests.helpers import b64, run_body, tar_gz


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


# The content of mount 0 is unpacked at /v/0 of a carrier that mounts the run's volume at /v:
# through `h`, `evil` would land in mount 1, the read-only /other.
ATTACK = tar_gz(
    {},
    extra=[
        member("s", tarfile.SYMTYPE, "/v"),
        member("h", tarfile.LNKTYPE, "s"),
        member("h/1/evil"),
    ],
)


def test_writing_through_a_hard_link_to_a_symlink_is_refused(client: TestClient) -> None:
    volumes = {
        "/data": {"type": "directory", "content": b64(ATTACK)},
        "/other:ro": {"type": "directory"},
    }
    response = client.post("/run", json=run_body("ls", "/other", volumes=volumes))
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "volumes['/data'].content"
    assert "'h/1/evil'" in response.json()["message"]


def test_a_volume_cannot_be_filled_through_a_hard_link_to_a_symlink(client: TestClient) -> None:
    response = client.post("/volume", json={"name": "hardlink-attack", "content": b64(ATTACK)})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "content"
