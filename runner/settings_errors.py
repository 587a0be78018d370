"""A bad setting, said in the operator's words: one line per bad variable, naming the variable
(never pydantic's field path) and what it accepts, instead of a validation traceback; and a
`RUNNER_*` variable that is no setting (a typo), with the closest setting's name.

Values are not echoed: a setting may hold a token.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import SettingsError

PREFIX = "RUNNER_"
NOT_SETTINGS = re.compile(
    r"RUNNER_(TEST_.*|STDIO_COMMAND"  # the test suite's
    r"|ARCH|DEBUG|ENVIRONMENT|NAME|OS|PERFLOG|TEMP|TOOL_CACHE|TRACKING_ID|WORKSPACE)"  # CI's
)
"""Variables that are not the runner's though they look it: the test suite's, and those GitHub
Actions sets in every job (a warning for each would bury a real typo)."""
TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", Path: "a file path"}
BOUNDS = (
    (Ge, "ge", "{} or more"),
    (Gt, "gt", "more than {}"),
    (Le, "le", "at most {}"),
    (Lt, "lt", "less than {}"),
)


def setting_problems(model: type[BaseModel], error: ValidationError | SettingsError) -> list[str]:
    """One line per bad variable, in the order pydantic found them."""
    if isinstance(error, SettingsError):
        found = re.search(r'field "(\w+)"', str(error))
        name = found.group(1) if found else ""
        return [_line(model, name, "is not valid JSON")]
    lines: dict[str, str] = {}
    for item in error.errors():
        name = _field_name(model, str(item["loc"][0])) if item["loc"] else ""
        if not name:  # a rule across fields: name every variable in it
            message = _in_variables(model, str(item["msg"]).removeprefix("Value error, "))
            lines.setdefault(message, message)
            continue
        reason = str(item["msg"]).removeprefix("Value error, ").replace("Input should", "should")
        lines.setdefault(name, _line(model, name, reason))
    return list(lines.values())


def _field_name(model: type[BaseModel], found: str) -> str:
    """The field pydantic reports by name, or by the alias it was read from."""
    for name, field in model.model_fields.items():
        if found == name or found in getattr(field.validation_alias, "choices", ()):
            return name
    return found


def variable(model: type[BaseModel], name: str) -> str:
    """The environment variable(s) a field is read from."""
    field = model.model_fields.get(name)
    alias = field.validation_alias if field else None
    choices = getattr(alias, "choices", None)
    if choices:
        return " or ".join(str(choice) for choice in choices)
    return f"{PREFIX}{name.upper()}"


def _line(model: type[BaseModel], name: str, reason: str) -> str:
    field = model.model_fields.get(name)
    allowed = f" (allowed: {_allowed(field)})" if field else ""
    return f"{variable(model, name)}: {reason}{allowed}"


def _allowed(field: FieldInfo) -> str:
    """What a field accepts: its kind, its bounds, and its default."""
    words = [_kind(field.annotation)]
    for kind, attribute, text in BOUNDS:
        words += [
            text.format(getattr(rule, attribute))
            for rule in field.metadata
            if isinstance(rule, kind)
        ]
    default = field.get_default(call_default_factory=True)
    if default not in (None, [], {}):
        shown = ",".join(default) if isinstance(default, list) else default
        words.append(f"default {str(shown).lower() if isinstance(shown, bool) else shown}")
    return ", ".join(word for word in words if word)


def _kind(annotation: Any) -> str:
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(value) for value in typing.get_args(annotation))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _kind(inner[0]) if len(inner) == 1 else "a value"
    if typing.get_origin(annotation) is list:
        return "a comma-separated list" if _is_text_list(annotation) else "a JSON list"
    if typing.get_origin(annotation) is dict:
        return "a JSON object"
    return TYPE_WORDS.get(annotation, "")


def _is_text_list(annotation: Any) -> bool:
    return typing.get_args(annotation) == (str,)


def _in_variables(model: type[BaseModel], message: str) -> str:
    """`default_cpus exceeds max_cpus` → `RUNNER_DEFAULT_CPUS exceeds RUNNER_MAX_CPUS`."""
    for name in sorted(model.model_fields, key=len, reverse=True):
        message = re.sub(rf"\b{name}\b", variable(model, name), message)
    return message


def unknown_variables(model: type[BaseModel], found: dict[str, Iterable[str]]) -> list[str]:
    """One line per `RUNNER_*` name in `found` (where it was: names) that no setting reads,
    with the closest setting's name when there is one (its current name, when the closest is
    an older one it still reads: RUNNER_MCP_ALLOWED_HOSTS → RUNNER_ALLOWED_HOSTS)."""
    current: dict[str, str] = {}
    for field in model.model_fields:
        choices = variable(model, field).split(" or ")
        current.update((name, choices[0]) for name in choices)
    suffixes = [name.removeprefix(PREFIX) for name in current if name.startswith(PREFIX)]
    lines: list[str] = []
    for where, names in found.items():
        for name in sorted({name.upper() for name in names}):
            if not name.startswith(PREFIX) or name in current or NOT_SETTINGS.fullmatch(name):
                continue
            close = difflib.get_close_matches(name.removeprefix(PREFIX), suffixes, n=1)
            hint = (
                f"did you mean {current[PREFIX + close[0]]}?"
                if close
                else "see docs/configuration.md"
            )
            lines.append(f"{name} ({where}) is no setting, so it is ignored; {hint}")
    return lines
