"""Tool schemas shaped for models: generated from the shared models, then made small and plain.

Function-calling APIs reject `$ref`/`$defs` and `anyOf` in parameters, and every byte of
`tools/list` is read by the model on every turn. So the pydantic schema is inlined, each field
gets one type (the first of its union; the model still accepts the other forms, leniently), and
titles, examples and string constraints go (each tool's description carries one example call;
the model still checks every constraint and names the field it refuses).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

DROPPED = frozenset(
    {"title", "examples", "pattern", "minLength", "maxLength", "format", "writeOnly"}
)


def input_schema(model: type[BaseModel], *, explained: bool = True) -> dict[str, Any]:
    """`model`'s JSON schema, inlined, one type per field, closed to unknown fields.
    `explained` false: without the fields' descriptions, for a tool that takes the same
    arguments as another and says so (`start_run`): the model reads them once."""
    schema = model.model_json_schema(by_alias=True)
    shaped: dict[str, Any] = plain(schema, schema.get("$defs", {}))
    shaped.pop("description", None)  # the tool's description says it better
    shaped["additionalProperties"] = False
    return shaped if explained else _unexplained_fields(shaped)


def _unexplained_fields(node: Any) -> Any:
    if isinstance(node, list):
        return [_unexplained_fields(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {key: _unexplained_fields(value) for key, value in node.items() if key != "description"}


def _unexplained(node: Any) -> Any:
    """A map's value schema without its own description: the map's field explains it."""
    if isinstance(node, dict):
        node.pop("description", None)
    return node


def plain(node: Any, defs: dict[str, Any], *, names: bool = False) -> Any:
    """`node` with references inlined, unions reduced to their first non-null member, and
    titles and examples dropped. `names`: `node` maps field names to schemas."""
    if isinstance(node, list):
        return [plain(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return plain(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
    union = node.get("anyOf") or node.get("oneOf")
    if union is not None:
        chosen = next((member for member in union if member.get("type") != "null"), union[0])
        rest = {key: value for key, value in node.items() if key not in ("anyOf", "oneOf")}
        return plain({**chosen, **rest}, defs)
    if names:
        return {name: plain(value, defs) for name, value in node.items()}
    return {
        key: _unexplained(plain(value, defs))
        if key == "additionalProperties"
        else plain(value, defs, names=key == "properties")
        for key, value in node.items()
        if key not in DROPPED and key != "$defs" and not (key == "default" and value is None)
    }
