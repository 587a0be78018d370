"""Files a run handed back (its `outputs` and `response: true` paths), as a model sees them.

Each file gets a `run://{run_id}/files/{path}` uri that `read_file` reads, for the caller's
token only, as long as the run's result is kept. In an answer, small text files are shown as
text, images (PNG, JPEG, GIF, WebP, small enough for a model to take) as image content, and
every file is named in the text with its type and size and linked (`resource_link`).
"""

from __future__ import annotations

import base64
import io
import mimetypes
import posixpath
import re
import struct
import tarfile
from dataclasses import dataclass
from urllib.parse import quote, unquote

from runner.errors import InvalidRequest
from runner.models import RUN_ID, RunResult

SCHEME = "run://"
LISTED_FILES = 100
TEXT_SHOWN_BYTES = 4 * 1024
TEXT_SHOWN_TOTAL = 16 * 1024
IMAGE_SHOWN_BYTES = 256 * 1024
IMAGE_SHOWN_TOTAL = 512 * 1024
IMAGES_SHOWN = 4
IMAGE_MAX_SIDE = 8000
"""Models refuse larger images (the Claude API: 8000 px a side)."""
IMAGE_TYPES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}
TEXT_TYPES = {".csv": "text/csv", ".json": "application/json", ".svg": "image/svg+xml"}


@dataclass
class HandedBack:
    """One file a run handed back: its container path, bytes and type."""

    path: str
    data: bytes
    mime_type: str
    text: bool
    image: bool
    size: int
    """The file's size: more than `len(data)` when only its head was read."""


def uri(run_id: str, path: str) -> str:
    return f"{SCHEME}{run_id}/files/{quote(path.lstrip('/'))}"


def parse_uri(value: str) -> tuple[str, str]:
    """(run id, absolute container path) of a `run://` uri, or an error naming `uri`."""
    run_id, _, rest = value.removeprefix(SCHEME).partition("/files/")
    path = posixpath.normpath("/" + unquote(rest)) if rest else ""
    if (
        not value.startswith(SCHEME)
        or not re.fullmatch(RUN_ID, run_id)
        or path in ("", "/")
        or ".." in unquote(rest).split("/")
    ):
        raise InvalidRequest(
            "uri: not a file a run handed back; copy the run:// uri from the run's answer, "
            "e.g. run://3f9c0a1b2c3d4e5f/files/out/plot.png",
            field="uri",
        )
    return run_id, path


def handed_back(path: str, data: bytes, size: int | None = None) -> HandedBack:
    """`data` classified: an image by its first bytes and its size in pixels, text when it is
    UTF-8 without NUL bytes, anything else a file to link. `size`: the whole file's, when
    `data` is its head."""
    mime = _image_type(data)
    image = mime is not None and _fits(data, mime)
    size = len(data) if size is None else size
    text = mime is None and b"\0" not in data and _utf8(data, size > len(data))
    if mime is None:
        suffix = posixpath.splitext(path)[1].lower()
        guessed = TEXT_TYPES.get(suffix) or mimetypes.guess_type(path)[0]
        mime = guessed or ("text/plain" if text else "application/octet-stream")
    return HandedBack(path, data, mime, text, image, size)


def returned_files(result: RunResult) -> tuple[list[HandedBack], list[str]]:
    """Every regular file of the result's returned paths (blocking: decodes archives), and a
    sentence for each path that returned nothing."""
    files: list[HandedBack] = []
    notes: list[str] = []
    for path, volume in result.volumes.items():
        if volume.error is not None:
            notes.append(f"nothing returned from {volume.type} {path}: {volume.error}")
            continue
        data = base64.b64decode(volume.content)
        if volume.type == "file":
            files.append(handed_back(path, data))
            continue
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive:
                extracted = archive.extractfile(member) if member.isfile() else None
                if extracted is not None:
                    name = posixpath.normpath(f"{path.rstrip('/')}/{member.name}")
                    files.append(handed_back(name, extracted.read()))
        if not any(item.path.startswith(path.rstrip("/") + "/") for item in files):
            notes.append(f"{path}: empty (the run wrote no file there)")
    return files, notes


def _utf8(data: bytes, cut: bool) -> bool:
    """UTF-8, allowing a character cut at the end of a head."""
    try:
        data.decode()
    except UnicodeDecodeError as exc:
        return cut and exc.start >= len(data) - 3
    return True


def _image_type(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in IMAGE_TYPES.items() if data.startswith(magic)), None)


def _fits(data: bytes, mime: str) -> bool:
    """The image's width and height are known from its header and within `IMAGE_MAX_SIDE`."""
    size = _dimensions(data, mime)
    return size is not None and 0 < max(size) <= IMAGE_MAX_SIDE


def _dimensions(data: bytes, mime: str) -> tuple[int, int] | None:
    try:
        if mime == "image/png":
            return struct.unpack(">II", data[16:24])
        if mime == "image/gif":
            return struct.unpack("<HH", data[6:10])
        if mime == "image/webp":
            return _webp(data)
        return _jpeg(data)
    except struct.error:
        return None


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _jpeg(data: bytes) -> tuple[int, int] | None:
    """From the first start-of-frame marker."""
    at = 2
    while at + 9 < len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        at += 2 + length
    return None
