"""Tool schemas shaped for models: generated from the shared models, then made small and plain.

Function-calling APIs reject `$ref`/`$defs` and `anyOf` in parameters, and every byte of
`tools/list` is read by the model on every turn. So the pydantic schema is inlined, a union
becomes one node with a list of types (`"type": ["array", "string"]`, each member's keywords
merged: `items` and `properties` only apply to their own type), so a strict client allows every
form the descriptions teach, and titles, examples and string constraints go (each tool's
description carries one example call; the model still checks every constraint and names the
field it refuses).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

DROPPED = frozenset(
    {"title", "examples", "pattern", "minLength", "maxLength", "format", "writeOnly"}
)


def input_schema(
    model: type[BaseModel], words: Mapping[str, str | None] | None = None
) -> dict[str, Any]:
    """`model`'s JSON schema, inlined, unions merged, closed to unknown fields; `words`
    replaces fields' descriptions (None: drops it)."""
    schema = model.model_json_schema(by_alias=True)
    shaped: dict[str, Any] = plain(schema, schema.get("$defs", {}))
    shaped.pop("description", None)  # the tool's description says it better
    shaped["additionalProperties"] = False
    for name, field in shaped.get("properties", {}).items():
        _unexplained_nested(field)
        if words and name in words:  # the words say it all: nested choices too
            _unexplained_nested(field, choices=True)
            field.pop("description", None)
            if (description := words[name]) is not None:
                field["description"] = description
    return shaped


def _unexplained_nested(field: dict[str, Any], *, choices: bool = False) -> None:
    """The fields of an argument's objects lose their descriptions (their names say enough,
    the argument's own description the rest), except a choice among values (an enum) unless
    `choices`."""
    for node in (field, field.get("additionalProperties")):
        if isinstance(node, dict):
            for inner in node.get("properties", {}).values():
                if choices or "enum" not in inner:
                    inner.pop("description", None)


def _unexplained(node: Any) -> Any:
    """A map's value schema without its own description: the map's field explains it."""
    if isinstance(node, dict):
        node.pop("description", None)
    return node


def plain(node: Any, defs: dict[str, Any], *, names: bool = False) -> Any:
    """`node` with references inlined, unions merged into one node (null left out: omit the
    field instead), and titles and examples dropped. `names`: `node` maps field names to
    schemas."""
    if isinstance(node, list):
        return [plain(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return plain(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
    union = node.get("anyOf") or node.get("oneOf")
    if union is not None:
        rest = {key: value for key, value in node.items() if key not in ("anyOf", "oneOf")}
        return plain({**_merged(union, defs), **rest}, defs)
    if names:
        return {name: plain(value, defs) for name, value in node.items()}
    return {
        key: _unexplained(plain(value, defs))
        if key == "additionalProperties"
        else plain(value, defs, names=key == "properties")
        for key, value in node.items()
        if key not in DROPPED and key != "$defs" and not (key == "default" and value is None)
    }


def _merged(union: list[Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The non-null members of a union as one node: their types as a list (one type stays a
    string), their other keywords side by side (each applies to its own type only)."""
    members = [plain(member, defs) for member in union if member.get("type") != "null"]
    merged: dict[str, Any] = {}
    types: list[str] = []
    for member in members or [plain(union[0], defs)]:
        kind = member.get("type")
        types += [kind] if isinstance(kind, str) else list(kind or [])
        merged.update({key: value for key, value in member.items() if key != "type"})
    if types:
        merged["type"] = types[0] if len(types) == 1 else list(dict.fromkeys(types))
    return merged


def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s structured content, shallow: the JSON types of the fields it always has,
    the rest left open (the text says it; every byte of the list costs, so their names are
    not repeated in a `required`)."""
    schema = model.model_json_schema(by_alias=True, mode="serialization")
    required = schema.get("required", [])
    properties: dict[str, Any] = {}
    for name, field in schema.get("properties", {}).items():
        if name not in required:
            continue
        union = field.get("anyOf") or [field]
        types = [member.get("type", "object") for member in union if "$ref" not in member]
        types += ["object" for member in union if "$ref" in member]
        unique = list(dict.fromkeys(types))
        properties[name] = {"type": unique[0] if len(unique) == 1 else unique}
    return {"type": "object", "properties": properties}
