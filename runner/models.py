"""Wire models shared by REST and MCP: one definition of every request and result.

Validation that needs no I/O lives here, so both front doors refuse the same bad input with the
same message. The MCP tool schemas are generated from these classes; `/docs` shows their
descriptions and examples.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from runner.limits import MIN_CPUS, MIN_MEMORY_BYTES, MIN_SCRATCH_BYTES, MIN_TIMEOUT_SECONDS
from runner.sizes import SIZE_PATTERN, SIZE_WORDS, parse_size

VolumeType = Literal["file", "directory", "volume", "host"]
PullPolicy = Literal["always", "missing", "never"]

CONTENT_PARTS = "content_parts"
"""Validation context key: the request is a multipart one, whose content may come as parts."""
RUN_ID = r"[0-9a-f]{16}"
"""What `new_run_id` mints."""
RUN_ID_PATTERN = f"^{RUN_ID}$"
VOLUME_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,254}$"
"""The engine's own rule (at least two characters), so a name it would refuse is a 422."""
PATTERN_WORDS = {
    SIZE_PATTERN: SIZE_WORDS,
    RUN_ID_PATTERN: "not a run id: a run id is 16 hex digits (0-9, a-f), as the run's start "
    "returned it",
    VOLUME_NAME_PATTERN: "not a volume name: a letter or digit, then 1 to 254 letters, digits, "
    "'_', '.' or '-'",
}
"""What each pattern of these models means, in the words an error uses instead of the regex."""
RESERVED_VOLUME_NAMES = re.compile(
    rf"oneoff-(lease-|hosts-|grant-|expiry-|{RUN_ID}(-record|-delivered|-claim)?$)"
)
"""Names of the volumes the runner makes for itself (its leases, its hosts file, its grants of
private images, the expiries of callers' volumes, its runs' volumes, records, delivered marks
and warm claims): a caller's volume named so could stand in for one of them."""
RESERVED_LABEL_PREFIX = "oneoff-runner"
"""The runner's own labels (`oneoff-runner.*`, `backends.labels`): what it reads back to find
and judge its runs, so callers can never set them."""
IMAGE_NAME_MAX = 255
BYTES_FIELDS = frozenset({"stdin"})
"""Text that reaches only a pipe, never a C string: NUL is data there."""
MODE_PATTERN = r"^0?[0-7]{3}$"
_MODE = re.compile(MODE_PATTERN)
VOLUME_KEY_PATTERN = r"^/[^:]*[^:/][^:]*(:(ro|rw)?)?$"
"""A volume key as `MountPoint.parse` takes it (for the OpenAPI; the parser says why not)."""
ENV_NAME_PATTERN = r"^[^=]+$"
IMAGE_PATTERN = r"^[^@]{0,255}(:[^@/:]*)?(@[\s\S]*)?$"
"""An image reference whose name (before the tag or digest) fits `IMAGE_NAME_MAX`."""
SPLITTABLE_PATTERN = r"""^([^'"\\]|\\[\s\S]|'[^']*'|"([^"\\]|\\[\s\S])*")*$"""
"""A string `shlex.split` splits: quotes closed, no backslash left at the end."""
ARGUMENTS_PATTERN = r"[^ \t\r\n]"
"""A command line that splits into at least one argument (with `SPLITTABLE_PATTERN`)."""


def _not_boolean(value: Any) -> Any:
    """JSON's `true` and `false` are not numbers (pydantic would take them for 1 and 0)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not {str(value).lower()}")
    return value


NOT_BOOLEAN = BeforeValidator(_not_boolean)
"""On every number a caller sends: `"timeout_seconds": true` is a mistake, not one second."""


def new_run_id() -> str:
    """A new run's id (`RUN_ID`): every run's, synchronous or async, is minted here."""
    return uuid.uuid4().hex[:16]


Argv = Annotated[
    list[str] | str | None,
    Field(
        description="A list of arguments (exec form), or one string split like a shell would "
        "(no shell is involved).",
        examples=[["sh", "-c", "echo hello"]],
    ),
]


class StrictModel(BaseModel):
    """Unknown fields are refused, so a typo is a 422 naming it instead of a silent no-op.

    No text may hold a NUL byte: every string reaches the engine or the kernel (arguments,
    environment, paths, labels), where NUL ends a C string or is refused with a host path in
    the message. Nested models check their own fields.

    An explicit `null` for an optional field means "not given": its default applies. Clients of
    oneoff-docker-runner send `"env_vars": null`, `"volumes": null`, `"response": null`, ...
    """

    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name not in BYTES_FIELDS and _holds_nul(value):
            raise ValueError(
                "contains a NUL byte (\\x00), which no argument, variable, path or "
                "label can hold; remove it"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _null_is_not_given(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        optional = {name for name, field in cls.model_fields.items() if not field.is_required()}
        return {
            key: value for key, value in data.items() if value is not None or key not in optional
        }


def _holds_nul(value: Any) -> bool:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(item) for item in value)
    return False


class AuthConfig(StrictModel):
    """Registry credentials, used for this run's pull only: never logged, stored or returned."""

    username: str = Field(min_length=1, description="Registry user.", examples=["robot"])
    password: SecretStr = Field(description="Password or access token.", examples=["s3cret"])
    email: str | None = Field(None, description="Rarely needed.", examples=["me@example.com"])
    serveraddress: str | None = Field(
        None,
        description="Registry host. Defaults to the image's.",
        examples=["registry.example.com"],
    )


class VolumeSpec(StrictModel):
    """What to put at one container path, and whether to hand it back after the run."""

    type: VolumeType = Field(
        description="file: `content` is the base64 of one file. directory: `content` is the "
        "base64 of a tar.gz extracted at the path (omit for an empty directory). volume: mount "
        "the named volume `name`. host: bind `host_path` (only prefixes the operator allows).",
        examples=["file"],
    )
    content: str | None = Field(
        None, description="Base64 content (file or directory).", examples=["aGVsbG8K"]
    )
    mode: str | None = Field(
        None,
        description='Octal permissions of a file, e.g. "0755". Default "0644".',
        examples=["0755"],
    )
    response: bool = Field(
        False,
        description="Return this file or directory's content after the run.",
        examples=[True],
    )
    name: str | None = Field(
        None,
        pattern=VOLUME_NAME_PATTERN,
        description="Volume name, for type volume.",
        examples=["cache"],
    )
    host_path: str | None = Field(
        None, description="Absolute host path, for type host.", examples=["/srv/shared"]
    )

    @field_validator("mode")
    @classmethod
    def _octal_mode(cls, value: str | None) -> str | None:
        if value is not None and not _MODE.match(value):
            raise ValueError(f'mode {value!r} is not octal permissions: write it like "0755"')
        return value

    @model_validator(mode="after")
    def _fields_for_type(self, info: ValidationInfo) -> VolumeSpec:
        parts = bool(info.context and info.context.get(CONTENT_PARTS))
        if self.type == "file" and self.content is None and not parts:
            raise ValueError(
                "a file volume needs `content` (the file's bytes in base64), or, in a "
                "multipart request, a part named by its volume key"
            )
        if self.type == "volume" and not self.name:
            raise ValueError("a volume of type volume needs `name` (create it with /volume)")
        if self.type == "host" and not self.host_path:
            raise ValueError("a volume of type host needs `host_path` (an absolute host path)")
        if self.type == "host" and not posixpath.isabs(self.host_path or ""):
            raise ValueError(f"host_path {self.host_path!r} must be an absolute path")
        if self.response and self.type not in ("file", "directory"):
            raise ValueError("`response: true` works on file and directory volumes only")
        if self.type in ("volume", "host") and self.content is not None:
            raise ValueError(f"a volume of type {self.type} takes no `content`")
        if self.mode is not None and self.type != "file":
            raise ValueError("`mode` applies to file volumes only")
        return self


class MountPoint(BaseModel):
    """A parsed volume key: `"/path[:ro|:rw]"`."""

    path: str
    read_only: bool

    @classmethod
    def parse(cls, key: str) -> MountPoint:
        """Parse a volume key, or raise ValueError saying how to write it."""
        path, _, suffix = key.partition(":")
        if suffix not in ("", "ro", "rw"):
            raise ValueError(
                f"volume key {key!r}: suffix {':' + suffix!r} is not allowed; use :ro or :rw"
            )
        if not path.startswith("/"):
            raise ValueError(f"volume key {key!r}: the container path must be absolute")
        normal = "/" + posixpath.normpath(path).lstrip("/")  # POSIX keeps a leading //
        if normal == "/":
            raise ValueError(f"volume key {key!r}: cannot mount over the container's root")
        return cls(path=normal, read_only=suffix == "ro")


class RunRequest(StrictModel):
    """One container run: image, command, environment, files in, files out, limits."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "image": "busybox:latest",
                    "pull_policy": "missing",
                    "command": ["/test.sh"],
                    "volumes": {
                        "/test.sh:ro": {
                            "type": "file",
                            "mode": "0755",
                            "content": "IyEvYmluL2FzaAplY2hvICJIZWxsbywgV29ybGQhIiA+IC9hcHAvZGF0"
                            "YS90ZXN0LnR4dAo=",
                        },
                        "/app/data": {"type": "directory", "response": True},
                    },
                }
            ]
        },
    )

    image: str = Field(
        min_length=1, max_length=512, description="Image reference.", examples=["busybox:latest"]
    )
    command: Argv = None
    entrypoint: Argv = None
    env_vars: dict[str, str | int | bool] = Field(
        default_factory=dict,
        description="Environment variables; int and bool values are sent as text.",
        examples=[{"GREETING": "hi", "DEBUG": True}],
    )
    working_dir: str | None = Field(
        None, description="Absolute working directory.", examples=["/app"]
    )
    user: str | None = Field(
        None, description='User to run as: "name", "uid" or "uid:gid".', examples=["1000:1000"]
    )
    pull_policy: PullPolicy = Field(
        "always",
        description="always: pull first; missing: pull if absent; never: local only.",
        examples=["missing"],
    )
    auth_config: AuthConfig | None = Field(
        None,
        description="Private registry credentials.",
        examples=[{"username": "robot", "password": "s3cret"}],
    )
    volumes: dict[str, VolumeSpec] = Field(
        default_factory=dict,
        description='Map of "<absolute container path>[:ro|:rw]" to what goes there.',
        examples=[{"/app/data": {"type": "directory", "response": True}}],
    )
    timeout_seconds: Annotated[float | None, NOT_BOOLEAN] = Field(
        None,
        ge=MIN_TIMEOUT_SECONDS,
        allow_inf_nan=False,
        description=f"Kill the container after this long: at least {MIN_TIMEOUT_SECONDS} s "
        "(operator default and maximum).",
        examples=[30],
    )
    memory: str | None = Field(
        None,
        pattern=SIZE_PATTERN,
        description="Memory limit, e.g. 256m or 1g; at least 6m.",
        examples=["256m"],
    )
    scratch: str | None = Field(
        None,
        description="Disk limit, e.g. 256m or 2g; at least 1m. Content sent counts; also the "
        "largest file. Past it the run is stopped.",
        examples=["256m"],
        json_schema_extra={"pattern": SIZE_PATTERN},
    )
    cpus: Annotated[float | None, NOT_BOOLEAN] = Field(
        None,
        ge=MIN_CPUS,
        allow_inf_nan=False,
        description=f"CPU limit, at least {MIN_CPUS}.",
        examples=[0.5],
    )
    network: str | None = Field(
        None,
        description='"none" or a network name; the operator default applies when absent.',
        examples=["none"],
    )
    runtime: str | None = Field(
        None,
        min_length=1,
        description="OCI runtime to run under, e.g. runsc (gVisor): one the operator allows "
        "(RUNNER_ALLOWED_RUNTIMES). Default: the operator's (RUNNER_RUNTIME).",
        examples=["runsc"],
    )
    stdin: str | None = Field(
        None,
        description="Text for the command's standard input, then end of file.",
        examples=["hello\n"],
    )

    @field_validator("image")
    @classmethod
    def _image_name_length(cls, value: str) -> str:
        return image_name_within_limit(value)

    @field_validator("command", "entrypoint")
    @classmethod
    def _splittable(cls, value: list[str] | str | None) -> list[str] | str | None:
        if isinstance(value, str):
            try:
                shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot split {value!r} into arguments: {exc}") from None
        return value

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, value: list[str] | str | None) -> list[str] | str | None:
        if value is not None and not (shlex.split(value) if isinstance(value, str) else value):
            raise ValueError(
                "is empty; give at least one argument, or leave `command` out to run the "
                "image's CMD"
            )
        return value

    @field_validator("memory")
    @classmethod
    def _memory_floor(cls, value: str | None) -> str | None:
        if value is not None and parse_size(value) < MIN_MEMORY_BYTES:
            raise ValueError(
                f"{value!r} is below the minimum of 6m ({MIN_MEMORY_BYTES} bytes); the engine "
                "cannot run a container in less"
            )
        return value

    @field_validator("scratch")
    @classmethod
    def _scratch_size(cls, value: str | None) -> str | None:
        if value is not None and parse_size(value) < MIN_SCRATCH_BYTES:
            raise ValueError(
                f"{value!r} is below the minimum of 1m ({MIN_SCRATCH_BYTES} bytes): a run needs "
                "room for its content and its files"
            )
        return value

    @field_validator("env_vars")
    @classmethod
    def _env_names(cls, value: dict[str, str | int | bool]) -> dict[str, str | int | bool]:
        for name in value:
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"environment variable name {name!r} must be non-empty, no '='")
        return value

    @field_validator("working_dir")
    @classmethod
    def _absolute_dir(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"working_dir {value!r} must be an absolute path")
        return value

    @field_validator("volumes")
    @classmethod
    def _volume_keys(cls, value: dict[str, VolumeSpec]) -> dict[str, VolumeSpec]:
        seen: dict[str, str] = {}
        for key, spec in value.items():
            path = MountPoint.parse(key).path
            if path in seen:
                raise ValueError(f"volume keys {seen[path]!r} and {key!r} name the same path")
            seen[path] = key
            if spec.type == "file" and key.endswith("/"):
                raise ValueError(f"volume key {key!r}: a file path cannot end with '/'")
        return value

    def argv(self, field: Literal["command", "entrypoint"]) -> list[str] | None:
        """The field as an argument list: a string is split like a shell would."""
        value = getattr(self, field)
        return shlex.split(value) if isinstance(value, str) else value

    def env_strings(self) -> dict[str, str]:
        """Values as the container sees them: booleans as "true"/"false"."""
        return {
            key: str(value).lower() if isinstance(value, bool) else str(value)
            for key, value in self.env_vars.items()
        }

    def drop_content(self) -> None:
        """Forget the volumes' base64 once the run's spec holds it decoded: the text of a large
        request would otherwise stay beside its bytes for the whole run. The request is spent
        then (a file volume without content would not validate): it is not run twice."""
        for volume in self.volumes.values():
            volume.content = None


class ReturnedVolume(BaseModel):
    """Content handed back from a `response: true` path."""

    type: Literal["file", "directory"]
    content: str = Field(description="Base64 of the file, or of a tar.gz of the directory.")
    error: str | None = Field(
        None,
        description="Why nothing came back from this path (content is then empty): the run "
        "left something else there (a symlink, a FIFO, a directory for a file) or removed it.",
    )


class RunResult(BaseModel):
    """What happened: returned whenever the container ran, whatever its exit code."""

    run_id: str
    status: str = Field(
        description='"success", "error: <exit code>", "timeout" or "scratch_exceeded".'
    )
    exit_code: int | None = Field(
        description="The container's exit code (137 after a timeout kill)."
    )
    stdout: str
    stderr: str
    stdout_truncated: bool = Field(description="stdout exceeded the output cap and was cut.")
    stderr_truncated: bool = Field(description="stderr exceeded the output cap and was cut.")
    timed_out: bool
    oom_killed: bool = Field(description="The container hit its memory limit.")
    scratch_exceeded: bool = Field(
        False,
        description="The runner killed the run: it wrote past its disk limit (`scratch`), made "
        "more files than allowed, or its disk use could not be measured; `message` says which.",
    )
    message: str | None = Field(
        None, description="Why the runner stopped the run, when it did: the limit and the fix."
    )
    streams_merged: bool = Field(
        False,
        description="stdout and stderr came as one stream (Kubernetes pod logs): all the "
        "output is in stdout, stderr is empty.",
    )
    volumes: dict[str, ReturnedVolume] = Field(
        default_factory=dict, description="Each `response: true` path's content."
    )
    execution_time: float = Field(description="Seconds from request to result.")


def image_name_within_limit(value: str) -> str:
    """The engine refuses a repository name (before the tag or digest) over 255 characters,
    with a message of its own; say it first, naming the field."""
    name = value.partition("@")[0]
    slash = name.rfind("/")
    if ":" in name[slash + 1 :]:
        name = name[: name.rindex(":")]
    if len(name) > IMAGE_NAME_MAX:
        raise ValueError(
            f"the repository name is {len(name)} characters; an image reference's name "
            f"(before the tag or digest) has at most {IMAGE_NAME_MAX}"
        )
    return value


def is_reserved_label(label: str) -> bool:
    """Whether `label` is the runner's (any case: what reads labels back must never be
    confused by a near-copy)."""
    return label.strip().lower().startswith(RESERVED_LABEL_PREFIX)


class ErrorDetail(BaseModel):
    field: str
    message: str
    type: str


class ErrorBody(BaseModel):
    """Every error answer: a stable code, what went wrong and what to do, the field at fault."""

    error: str = Field(description="Stable code, e.g. invalid_request, image_not_found.")
    message: str = Field(description="What went wrong and how to fix the request.")
    field: str | None = Field(None, description="The request field at fault, if one is.")
    detail: list[ErrorDetail] | None = Field(None, description="Every invalid field (422).")
