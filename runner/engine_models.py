"""Wire models of what the runner manages besides runs: named volumes, images, containers, the
backend's health. Shared by REST and MCP like `runner.models`, whose base they use."""

from __future__ import annotations

import base64
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator

from runner.errors import InvalidRequest
from runner.models import (
    NOT_BOOLEAN,
    RESERVED_LABEL_PREFIX,
    RESERVED_VOLUME_NAMES,
    VOLUME_NAME_PATTERN,
    AuthConfig,
    StrictModel,
    image_name_within_limit,
    is_reserved_label,
)


class CreateVolumeRequest(StrictModel):
    """A named volume, optionally filled from a tar.gz (`tar czf x.tar.gz target_dir`)."""

    name: str = Field(
        pattern=VOLUME_NAME_PATTERN, description="Docker volume name.", examples=["my-data"]
    )
    content: str | None = Field(
        None,
        description="Base64 of a tar.gz. The contents of a single top-level folder shared by "
        "every member land at the volume's root; otherwise the archive is extracted as it is.",
        examples=[
            "H4sIAAAAAAACA+3RMQqDQBAF0Kk9RU5gVlDvsxAhhSAkK3j8rFbBPoGQ95o//CmmmFsu+Xqf5nlpy1biI1I19v2R"
            "1Tn37dtc+y4N3RiXFF+wPkt+1PPxn47XNwEAAAAAAAAAAMCPeQF8ipoWACgAAA=="
        ],
    )
    driver: str | None = Field(
        None, description="Volume driver (engine default: local).", examples=["local"]
    )
    driver_opts: dict[str, str] = Field(
        default_factory=dict, description="Driver options.", examples=[{"type": "tmpfs"}]
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description=f"Labels for the volume; `{RESERVED_LABEL_PREFIX}.*` is the runner's own.",
        examples=[{"team": "ci"}],
    )
    reuse_existing: bool = Field(
        False,
        strict=True,
        description="Fill an existing volume of that name instead of answering 409.",
        examples=[False],
    )
    ttl_seconds: Annotated[int | None, NOT_BOOLEAN] = Field(
        None,
        ge=60,
        description="Keep it this long from now (default RUNNER_VOLUME_TTL_SECONDS from its "
        "creation, at most RUNNER_MAX_VOLUME_TTL_SECONDS); with reuse_existing, extends an "
        "existing volume's life.",
        examples=[86400],
    )

    @field_validator("name")
    @classmethod
    def _unreserved_name(cls, value: str) -> str:
        if RESERVED_VOLUME_NAMES.match(value):
            raise ValueError(
                f"{value!r} is shaped like the names of the runner's own volumes (oneoff-lease-*, "
                "oneoff-hosts-*, oneoff-grant-*, oneoff-expiry-*, oneoff-<run id>); choose another "
                "name"
            )
        return value

    @field_validator("labels")
    @classmethod
    def _unreserved_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for label in value:
            if is_reserved_label(label):
                raise ValueError(
                    f"label {label!r} is in the runner's reserved namespace "
                    f"({RESERVED_LABEL_PREFIX}.*); choose a name outside it"
                )
        return value


class CreateVolumeResult(BaseModel):
    status: Literal["success"] = "success"
    name: str
    detail: str


class VolumeInfo(BaseModel):
    """A named volume the caller created (POST /volume, create_volume)."""

    name: str
    driver: str
    created_at: str | None = Field(None, description="When it was created (RFC 3339).")
    labels: dict[str, str] = Field(default_factory=dict, description="The caller's labels.")
    expires_at: str | None = Field(
        None,
        description="When the reaper removes it, once no run uses it (RFC 3339); extend it "
        "with POST /volume (reuse_existing, ttl_seconds). None: kept until removed.",
    )


class VolumeList(BaseModel):
    volumes: list[VolumeInfo]


class RemovedVolume(BaseModel):
    status: Literal["removed"] = "removed"
    name: str


class VolumeName(StrictModel):
    """One of the caller's volumes, by name."""

    name: str = Field(pattern=VOLUME_NAME_PATTERN, description="From list_volumes.")


class PullImageRequest(StrictModel):
    """An image to pull ahead of runs, under the same policy and credentials as a run's pull."""

    image: str = Field(
        min_length=1, max_length=512, description="Image reference.", examples=["busybox:1.36"]
    )
    auth_config: AuthConfig | None = Field(
        None,
        description="Private registry credentials, used for this pull only.",
        examples=[{"username": "robot", "password": "s3cret"}],
    )

    @field_validator("image")
    @classmethod
    def _image_name_length(cls, value: str) -> str:
        return image_name_within_limit(value)


class PulledImage(BaseModel):
    status: Literal["pulled"] = "pulled"
    image: str = Field(description="The reference as asked.")
    id: str = Field(description="The image's id on the engine.")
    size: int = Field(description="Bytes on the engine.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    backend: str
    version: str = Field(description="The backend's version (engine or API server).")
    details: dict[str, str] = Field(default_factory=dict)


class Unavailable(BaseModel):
    status: Literal["unavailable"] = "unavailable"
    backend: str
    error: str
    message: str = Field(description="Why the backend cannot be reached.")
    field: str | None = None


class ContainerInfo(BaseModel):
    id: str
    name: str
    image: str
    status: str
    run_id: str | None = None


class ImageInfo(BaseModel):
    id: str
    tags: list[str]
    size: int


class ContainerList(BaseModel):
    containers: list[ContainerInfo]


class ImageList(BaseModel):
    images: list[ImageInfo]


VOLUME_PATH_MAX = 4096


def volume_path(value: str) -> str:
    """A path inside a volume, relative to its root, normalised: "" is the root. Refused:
    absolute paths, `..`, and what no file system holds."""
    if value.startswith("/"):
        raise ValueError(
            f"{value!r} is absolute; write the path relative to the volume's root, e.g. "
            f"{value.lstrip('/') or 'src/app.py'!r}"
        )
    if len(value.encode()) > VOLUME_PATH_MAX:
        raise ValueError(f"is longer than {VOLUME_PATH_MAX} bytes")
    parts = [part for part in value.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"{value!r} climbs out of the volume with '..'; name a path inside it")
    return "/".join(parts)


class VolumeEntry(BaseModel):
    path: str = Field(description="Relative to the volume's root.")
    type: Literal["file", "directory", "symlink", "other"]
    size: int = Field(description="Bytes (files).")
    mode: str = Field(description="Permission bits, octal.")


class VolumeFiles(BaseModel):
    """What a volume holds under a path, every level down."""

    name: str
    path: str
    entries: list[VolumeEntry]
    total_bytes: int = Field(
        description="What the entries use on disk, as the size bound counts it: their bytes "
        "and a block per entry."
    )
    max_bytes: int = Field(description="The volume's size bound (RUNNER_MAX_VOLUME_BYTES).")


class VolumeFile(BaseModel):
    """One file of a volume: text when it is UTF-8, else base64."""

    name: str
    path: str
    content: str
    encoding: Literal["text", "base64"]
    size: int


class WriteVolumeFile(StrictModel):
    """A file to write into a volume (made, or replaced), its parent directories made."""

    path: str = Field(description="Relative to the volume's root.", examples=["src/app.py"])
    content: str = Field(description="The file's text, or base64 with encoding base64.")
    encoding: Literal["text", "base64"] = Field("text", description="How content is written.")
    mode: str = Field("0644", pattern=r"^0?[0-7]{3}$", description="Permission bits, octal.")

    _path = field_validator("path")(volume_path)

    def data(self) -> bytes:
        """The file's bytes; InvalidRequest naming `content` when base64 is not."""
        if self.encoding == "text":
            return self.content.encode()
        try:
            return base64.b64decode(self.content, validate=True)
        except ValueError:
            raise InvalidRequest(
                "content: not base64; send the text with encoding text, or valid base64",
                field="content",
            ) from None


class WrittenVolumeFile(BaseModel):
    name: str
    path: str
    size: int
    total_bytes: int = Field(description="The volume's use after the write (see VolumeFiles).")
