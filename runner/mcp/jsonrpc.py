"""What makes a JSON value a JSON-RPC 2.0 message the MCP doors answer, judged before the SDK
sees it, in one place for HTTP (`runner.mcp.http`) and stdio (`runner.mcp.stdio`).

The SDK takes a request whose id is not a string or an integer (an object, a float, a
boolean, `null`) for a notification, which gets no answer: a client waits forever. MCP says
"Requests MUST include a string or integer ID" and "the ID MUST NOT be null"; JSON-RPC answers
what is not a valid request with -32600 and id `null` (its id could not be read).
"""

from __future__ import annotations

from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
SHAPE = 'not a JSON-RPC 2.0 message: send {"jsonrpc": "2.0", "id": ..., "method": ...}'
TOO_DEEP = "Parse error: the JSON is nested too deeply to read; flatten it"
ID = (
    "id: a request's id must be a string or an integer (not null, a number with a fraction, "
    "a boolean, an object or an array)"
)


def not_a_message(message: Any) -> str | None:
    """Why the decoded JSON `message` is not a message to answer (-32600), or None."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return SHAPE
    if "method" in message:
        if not isinstance(message["method"], str) or not isinstance(
            message.get("params", {}), dict
        ):
            return SHAPE
        return ID if "id" in message and not _valid_id(message["id"]) else None
    if "id" not in message or not ("result" in message or "error" in message):
        return SHAPE
    unread = message["id"] is None and "error" in message  # an error about an unreadable id
    return None if _valid_id(message["id"]) or unread else ID


def _valid_id(request_id: Any) -> bool:
    return isinstance(request_id, str) or (
        isinstance(request_id, int) and not isinstance(request_id, bool)
    )


def error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    """A JSON-RPC error response."""
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
