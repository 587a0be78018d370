"""The layout draws the architecture: layers point one way and no module imports itself back.

Every first-party import counts, wherever it stands (module top, inside a function, under
`TYPE_CHECKING`): a cycle hidden behind a late import is still a cycle for a reader.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("runner", "backends")
TOP_MODULES = ("api_app", "mcp_app")
# The front doors assemble the app and choose the backend; nothing else in the core may.
FRONT_DOORS = ("api_app", "mcp_app", "runner.cli")
ROUTE_DECORATORS = frozenset({"get", "post", "put", "patch", "delete", "api_route", "route"})
SDKS = {"docker": "backends.docker", "kubernetes": "backends.kubernetes"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    found = {name: ROOT / f"{name}.py" for name in TOP_MODULES}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[_module_name(path)] = path
    return found


def _imported(path: Path) -> Iterator[str]:
    """Every absolute import of `path` (`from a import b` counts `a` and `a.b`)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _imports(path: Path, known: set[str]) -> Iterator[str]:
    """First-party modules `path` imports (`from a import b` counts `a.b` when it is a module)."""
    return (name for name in _imported(path) if name in known)


def _graph() -> dict[str, set[str]]:
    sources = _sources()
    known = set(sources)
    graph = {name: set(_imports(path, known)) - {name} for name, path in sources.items()}
    for name in graph:  # a package's __init__ is not an import of its own submodules
        graph[name] = {target for target in graph[name] if not name.startswith(f"{target}.")}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the path that closes it, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name)):
            return found
    return None


def _front_door(name: str) -> bool:
    return any(name == door or name.startswith(f"{door}.") for door in FRONT_DOORS)


def test_there_are_no_import_cycles() -> None:
    assert _cycle(_graph()) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_core_never_imports_a_backend_or_a_front_door() -> None:
    wrong = {
        (name, target)
        for name, targets in _graph().items()
        if name.startswith("runner") and not _front_door(name)
        for target in targets
        if target.startswith("backends") or _front_door(target)
    }
    assert wrong == set()


def test_backends_import_only_the_core() -> None:
    wrong = {
        (name, target)
        for name, targets in _graph().items()
        if name.startswith("backends.")
        for target in targets
        if _front_door(target)
    }
    assert wrong == set()


@pytest.mark.parametrize("backend", ["docker", "kubernetes"])
def test_backend_specific_code_lives_in_its_own_package(backend: str) -> None:
    """Only the backend's own package uses it; the chooser (`backends`) and the front doors
    (the CLI's `pod-helper` command) only name it."""
    strays = [
        name
        for name, targets in _graph().items()
        if not name.startswith(f"backends.{backend}") and name != "backends"
        if not _front_door(name)
        for target in targets
        if target.startswith(f"backends.{backend}")
    ]
    assert strays == []


def _routes(path: Path) -> Iterator[str]:
    """Functions of `path` decorated as HTTP routes (`@router.get(...)` and the like)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                call = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(call, ast.Attribute) and call.attr in ROUTE_DECORATORS:
                    yield node.name


def test_rest_routes_live_only_in_runner_rest() -> None:
    strays = [
        f"{name}.{route}"
        for name, path in _sources().items()
        if not name.startswith("runner.rest.")
        for route in _routes(path)
    ]
    assert strays == []


def test_the_route_finder_finds_a_route() -> None:
    assert list(_routes(ROOT / "runner" / "rest" / "health.py")) == ["health", "livez", "metrics"]


@pytest.mark.parametrize("sdk", sorted(SDKS))
def test_a_backend_sdk_is_imported_only_in_its_backend(sdk: str) -> None:
    strays = [
        name
        for name, path in _sources().items()
        if not name.startswith(SDKS[sdk])
        if any(imported.split(".")[0] == sdk for imported in _imported(path))
    ]
    assert strays == []
