"""The tables of docs/configuration.md, generated from `runner.settings.Settings`.

Each setting's variable, default, accepted values and meaning come from its field (type,
bounds, default, `description`), so the page cannot disagree with what the runner reads:

- as a mkdocs hook, this module puts freshly generated tables into the built page;
- `uv run python docs/hooks/configuration.py` rewrites them in docs/configuration.md, which
  tests/unit/test_docs_site.py requires to be up to date (GitHub shows the file as it is).
"""

from __future__ import annotations

import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic.fields import FieldInfo

PAGE = Path(__file__).resolve().parents[1] / "configuration.md"
BEGIN = "<!-- generated from runner/settings.py by docs/hooks/configuration.py: begin -->"
END = "<!-- generated: end -->"
GENERATED = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
SECTIONS = (
    ("Identity provider (OAuth 2.1 / OpenID Connect)", ("oauth_",)),
    ("Docker engine", ("docker_",)),
    ("Kubernetes backend", ("kube_", "kubeconfig")),
)
"""Settings whose name starts so go under that heading; all others come first."""
KINDS = {
    bool: "`true` or `false`",
    int: "an integer",
    float: "a number",
    str: "text",
    Path: "a file path",
}
BOUNDS = ((Ge, "ge", "≥"), (Gt, "gt", ">"), (Le, "le", "≤"), (Lt, "lt", "<"))
UNITS = ((1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB"))


def tables() -> str:
    """The generated part of the page: one table per section, in the order of `Settings`."""
    from runner.settings import Settings

    grouped: dict[str, list[str]] = {"All backends": []} | {title: [] for title, _ in SECTIONS}
    for name, field in Settings.model_fields.items():
        grouped[_section(name)].append(_row(name, field))
    parts = [
        f"### {title}\n\n| variable | default | accepts | meaning |\n|---|---|---|---|\n"
        + "".join(rows)
        for title, rows in grouped.items()
    ]
    return f"{BEGIN}\n\n" + "\n".join(parts) + f"\n{END}"


def with_tables(markdown: str) -> str:
    """`markdown` with its generated part replaced by fresh tables."""
    if GENERATED.search(markdown) is None:
        raise ValueError(f"{PAGE.name} has lost its markers: {BEGIN} ... {END}")
    return GENERATED.sub(lambda _: tables(), markdown)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if page.file.src_uri != PAGE.name:
        return markdown
    return with_tables(markdown)


def _section(name: str) -> str:
    for title, prefixes in SECTIONS:
        if name.startswith(prefixes):
            return title
    return "All backends"


def _row(name: str, field: FieldInfo) -> str:
    cells = (_variables(name, field), _default(name, field), _accepts(name, field))
    return "| " + " | ".join((*cells, _escaped(field.description or ""))) + " |\n"


def _escaped(text: str) -> str:
    """Pipes and asterisks (a glob's) outside `code` read as text, not as table or emphasis."""
    parts = text.split("`")
    for index in range(0, len(parts), 2):
        parts[index] = parts[index].replace("|", "\\|").replace("*", "\\*")
    return "`".join(parts)


def _variables(name: str, field: FieldInfo) -> str:
    choices = getattr(field.validation_alias, "choices", None) or [f"RUNNER_{name.upper()}"]
    return " or ".join(f"`{choice}`" for choice in choices)


def _default(name: str, field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.get_default(call_default_factory=True)
        if value != field.get_default(call_default_factory=True):
            return "new at each start"
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return f"`{','.join(value)}`" if value else "empty"
    if isinstance(value, list | dict):
        return f"`{json.dumps(value)}`"
    return _number(name, value)


def _accepts(name: str, field: FieldInfo) -> str:
    annotation = _without_none(field.annotation)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        kind = " or ".join(f"`{choice}`" for choice in typing.get_args(annotation))
    elif origin is list:
        plain = typing.get_args(annotation) == (str,)
        kind = "a comma-separated list" if plain else "a JSON list"
    elif origin is dict:
        kind = "a JSON object"
    else:
        kind = KINDS.get(annotation, str(annotation))
    bounds = [
        f"{sign} {_number(name, getattr(rule, attribute), code=False)}"
        for kind_of_rule, attribute, sign in BOUNDS
        for rule in field.metadata
        if isinstance(rule, kind_of_rule)
    ]
    return ", ".join([kind, *bounds])


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kept = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return kept[0] if len(kept) == 1 else annotation
    return annotation


def _number(name: str, value: object, *, code: bool = True) -> str:
    """A default or a bound as written in the environment; sizes in bytes also in KiB/MiB/GiB."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    written = f"`{value}`" if code else str(value)
    if name.endswith("_bytes") and isinstance(value, int):
        for size, unit in UNITS:
            if value >= size and value % size == 0:
                return f"{written} ({value // size} {unit})"
    return written


def main() -> None:
    """Rewrite the generated part of docs/configuration.md; say whether it changed."""
    before = PAGE.read_text()
    after = with_tables(before)
    PAGE.write_text(after)
    sys.stdout.write(f"{PAGE}: {'rewritten' if after != before else 'up to date'}\n")


if __name__ == "__main__":
    main()
