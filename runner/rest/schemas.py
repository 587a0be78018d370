"""The request schemas of the OpenAPI, as tight as what the server accepts where JSON Schema can
say it: volume keys and environment names (`propertyNames`), a command line that splits into at
least one argument,
octal modes, sizes above their floors, the fields each volume type needs (`oneOf`, one branch per
`type`), base64 content, and `null` wherever it means "not given" (`runner.models.StrictModel`).
Never tighter than the server: every rule here is one of its own.

Only the OpenAPI gets these: the MCP tool schemas are made small and plain (`runner.mcp.schema`).
"""

from __future__ import annotations

import copy
from typing import Any

from runner.limits import MIN_MEMORY_BYTES, MIN_SCRATCH_BYTES
from runner.models import (
    ARGUMENTS_PATTERN,
    ENV_NAME_PATTERN,
    IMAGE_PATTERN,
    MODE_PATTERN,
    RESERVED_VOLUME_NAMES,
    SPLITTABLE_PATTERN,
    VOLUME_KEY_PATTERN,
    VOLUME_NAME_PATTERN,
)
from runner.sizes import at_least_pattern

BASE64_PATTERN = r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
VOLUME_FILE_PATTERN = r"^(?!/)(?!(.*/)?\.\.(/|$))"
"""`engine_models.volume_path`: relative to the volume's root, never climbing out of it."""
ANNOTATIONS = frozenset({"title", "description", "default", "examples"})
NULL = {"type": "null"}
ABSOLUTE = {"type": "string", "pattern": "^/"}
ABSENT = {"anyOf": [NULL]}
"""A field a branch does not take: left out, or null."""
NOT_RETURNED = {"enum": [False, None]}
OWN_VOLUME_NAME = rf"^(?!{RESERVED_VOLUME_NAMES.pattern}){VOLUME_NAME_PATTERN.removeprefix('^')}"
"""A volume name a caller may create: not one of the runner's own (`RESERVED_VOLUME_NAMES`)."""
FORM_REQUEST = "RunRequestWithParts"
"""`RunRequest` as the `request` part of a multipart body, whose file volumes may leave out
`content` (it comes as a part)."""


def tighten(schemas: dict[str, Any]) -> None:
    """Tighten the OpenAPI's `components.schemas` in place."""
    for name in (
        "RunRequest",
        "VolumeSpec",
        "AuthConfig",
        "CreateVolumeRequest",
        "PullImageRequest",
        "WriteVolumeFile",
    ):
        if name in schemas:
            _nullable_optionals(schemas[name])
    run = schemas["RunRequest"]["properties"]
    run["image"]["pattern"] = IMAGE_PATTERN
    run["command"]["anyOf"] = [
        {"type": "array", "items": {"type": "string"}, "minItems": 1},
        {
            "type": "string",
            "allOf": [{"pattern": SPLITTABLE_PATTERN}, {"pattern": ARGUMENTS_PATTERN}],
        },
        NULL,
    ]
    run["entrypoint"]["anyOf"][1]["pattern"] = SPLITTABLE_PATTERN
    run["volumes"]["anyOf"][0]["propertyNames"] = {"pattern": VOLUME_KEY_PATTERN}
    run["env_vars"]["anyOf"][0]["propertyNames"] = {"pattern": ENV_NAME_PATTERN}
    run["working_dir"]["anyOf"][0] = ABSOLUTE
    _size(run["memory"], MIN_MEMORY_BYTES)
    _size(run["scratch"], MIN_SCRATCH_BYTES)
    _volume_types(schemas["VolumeSpec"])
    if "PullImageRequest" in schemas:
        schemas["PullImageRequest"]["properties"]["image"]["pattern"] = IMAGE_PATTERN
    if "CreateVolumeRequest" in schemas:
        volume = schemas["CreateVolumeRequest"]["properties"]
        volume["content"]["anyOf"][0]["pattern"] = BASE64_PATTERN
        volume["name"]["pattern"] = OWN_VOLUME_NAME
    if "WriteVolumeFile" in schemas:
        _volume_file(schemas["WriteVolumeFile"])
    _with_parts(schemas)


def _volume_file(schema: dict[str, Any]) -> None:
    """A path inside the volume (not absolute, no `..`); base64 content when it says so."""
    schema["properties"]["path"]["pattern"] = VOLUME_FILE_PATTERN
    schema["if"] = {"properties": {"encoding": {"const": "base64"}}, "required": ["encoding"]}
    schema["then"] = {"properties": {"content": {"pattern": BASE64_PATTERN}}}


def _with_parts(schemas: dict[str, Any]) -> None:
    form = copy.deepcopy(schemas["RunRequest"])
    form.pop("examples", None)
    form["title"] = FORM_REQUEST
    volumes = form["properties"]["volumes"]["anyOf"][0]
    volumes["additionalProperties"] = {"$ref": "#/components/schemas/VolumeSpecWithParts"}
    spec = copy.deepcopy(schemas["VolumeSpec"])
    spec["title"] = "VolumeSpecWithParts"
    spec["oneOf"][0]["required"] = ["type"]
    schemas[FORM_REQUEST] = form
    schemas["VolumeSpecWithParts"] = spec


def _nullable_optionals(schema: dict[str, Any]) -> None:
    """An optional field may be `null` (it then takes its default)."""
    required = set(schema.get("required", []))
    for name, field in schema["properties"].items():
        if name in required or NULL in field.get("anyOf", []):
            continue
        core = {key: field.pop(key) for key in list(field) if key not in ANNOTATIONS}
        field["anyOf"] = [core, NULL]


def _size(field: dict[str, Any], minimum: int) -> None:
    field.pop("pattern", None)
    field["anyOf"] = [{"type": "string", "pattern": at_least_pattern(minimum)}, NULL]


def _volume_types(spec: dict[str, Any]) -> None:
    """What `VolumeSpec._fields_for_type` requires of each type, one branch each."""
    properties = spec["properties"]
    properties["mode"]["anyOf"][0]["pattern"] = MODE_PATTERN
    base64 = {"type": "string", "pattern": BASE64_PATTERN}
    properties["content"]["anyOf"][0] = base64
    properties["host_path"]["anyOf"][0] = {"type": "string"}
    spec["oneOf"] = [
        _branch("file", required=["content"], content=base64),
        _branch("directory", mode=ABSENT),
        _branch(
            "volume",
            required=["name"],
            name={"type": "string"},
            content=ABSENT,
            mode=ABSENT,
            response=NOT_RETURNED,
        ),
        _branch(
            "host",
            required=["host_path"],
            host_path=ABSOLUTE,
            content=ABSENT,
            mode=ABSENT,
            response=NOT_RETURNED,
        ),
    ]


def _branch(kind: str, required: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    branch: dict[str, Any] = {"properties": {"type": {"const": kind}, **fields}}
    if required:
        branch["required"] = ["type", *required]
    return branch
