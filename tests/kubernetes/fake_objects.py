"""Plain helpers of the fake API server over objects as dicts: schema validation, selectors,
merge patches, Status bodies."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

SCHEMA_VERSIONS = ("1.29.0", "1.37.0")  # the oldest with native sidecars, and the newest


def invalid(body: dict[str, Any]) -> str | None:
    for version in SCHEMA_VERSIONS:
        try:
            kubernetes_validate.validate(body, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            return f"{body.get('kind')} against {version}: {exc.message} at {list(exc.path)}"
    return None


def matches(item: dict[str, Any], selector: str | None) -> bool:
    """A label selector's equality (`k=v`, `k!=v`) and existence (`k`, `!k`) terms, as the API
    server reads them."""
    labels = item["metadata"].get("labels") or {}
    for term in (selector or "").split(","):
        if not term:
            continue
        if "=" not in term:
            if (term[1:] in labels) if term.startswith("!") else (term not in labels):
                return False
            continue
        key, _, value = term.partition("=")
        if key.endswith("!"):
            if labels.get(key[:-1]) == value:
                return False
        elif labels.get(key) != value:
            return False
    return True


def fields_match(item: dict[str, Any], selector: str | None) -> bool:
    for term in (selector or "").split(","):
        if term:
            path, _, value = term.partition("=")
            found: Any = item
            for part in path.split("."):
                found = found.get(part) if isinstance(found, dict) else None
            if str(found) != value:
                return False
    return True


def merged(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merged(target[key], value)
        else:
            target[key] = value
    return target


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "reason": reason,
        "code": code,
    }
