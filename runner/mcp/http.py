"""What the MCP HTTP door does with a POST before the SDK's transport sees it.

The SDK's stateless transport answers one message per POST and keeps nothing between POSTs, so
the things that span messages or connections are done here, once, for both the JSON and the SSE
transport:

- one size limit for both doors (`RUNNER_MAX_REQUEST_BYTES`), refused with 413;
- a body that is not a JSON-RPC message (`null`, an id that is an object, a float, a boolean or
  `null`: a request the SDK would take for a notification and answer 202) is -32600, in our
  words (`runner.mcp.jsonrpc`, which the stdio door shares);
- JSON-RPC batches, which protocol 2025-03-26 allows, are answered as a JSON array;
- a request whose client hangs up (JSON or SSE) is cancelled, and so is one named by a
  `notifications/cancelled` from the same caller (its bearer token and address): either way
  the run's container is killed and removed, as on REST;
- an access token must grant the scopes of what the message does (`authorize`, from
  `runner.oauth.door`: only the body tells a read-only tool call from another);
- routing headers are read as HTTP reads them (surrounding whitespace is not part of a value),
  and on 2026-07-28 a task method's `Mcp-Name` must name its task.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from mcp.shared.inbound import decode_header_value
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.mcp.jsonrpc import INVALID_REQUEST, PARSE_ERROR, TOO_DEEP, error, not_a_message

BATCH_VERSIONS = frozenset({"2025-03-26", ""})  # no version header: a 2025-03-26 client
TASK_METHODS = frozenset({"tasks/get", "tasks/update", "tasks/cancel"})
MODERN_VERSION = "2026-07-28"
NOT_JSON = object()
HEADER_MISMATCH = -32020
REQUEST_CANCELLED = -32800
CallKey = tuple[str, str, str]
Authorize = Callable[[Scope, Any, Send], Awaitable[bool]]
"""(scope, decoded message, send) -> may it go on; if not, the refusal has been sent."""


class Calls:
    """Requests in flight, by caller and JSON-RPC id, so a later POST can cancel them."""

    def __init__(self) -> None:
        self.scopes: dict[CallKey, list[anyio.CancelScope]] = {}

    @contextmanager
    def track(self, key: CallKey, scope: anyio.CancelScope) -> Iterator[None]:
        self.scopes.setdefault(key, []).append(scope)
        try:
            yield
        finally:
            self.scopes[key].remove(scope)
            if not self.scopes[key]:
                del self.scopes[key]

    def cancel(self, key: CallKey) -> None:
        for scope in self.scopes.get(key, []):
            scope.cancel()


class JsonRpcDoor:
    """ASGI middleware in front of the MCP transports; see the module docstring."""

    def __init__(self, app: ASGIApp, max_bytes: int, authorize: Authorize | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.calls = Calls()
        self.authorize = authorize

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive, self.max_bytes)
        if body is None:
            limit = f"requests are limited to {self.max_bytes} bytes (RUNNER_MAX_REQUEST_BYTES)"
            await _reply(send, 413, error(None, INVALID_REQUEST, limit))
            return
        scope = {**scope, "headers": _trimmed(scope["headers"])}
        try:
            decoded = json.loads(body)
        except RecursionError:
            await _reply(send, 400, error(None, PARSE_ERROR, TOO_DEEP))
            return
        except ValueError:
            decoded = NOT_JSON  # the SDK answers with a parse error
        if self.authorize is not None and not await self.authorize(scope, decoded, send):
            return
        await self._dispatch(scope, body, decoded, receive, send)

    async def _dispatch(
        self, scope: Scope, body: bytes, decoded: Any, receive: Receive, send: Send
    ) -> None:
        headers = Headers(scope=scope)
        version = headers.get("mcp-protocol-version", "")
        if isinstance(decoded, list):
            if version not in BATCH_VERSIONS or not decoded:
                why = "batches: send one message per request (only protocol 2025-03-26 allows them)"
                await _reply(send, 400, error(None, INVALID_REQUEST, why))
                return
            await self._guarded(
                receive, send, lambda _receive, out: self._batch(scope, decoded, out)
            )
            return
        if decoded is not NOT_JSON:
            refusal = _refusal(decoded, headers, version)
            if refusal is not None:
                await _reply(send, 400, refusal)
                return
            if decoded.get("method") == "notifications/cancelled":
                params = decoded.get("params") or {}
                self.calls.cancel(_key(scope, params.get("requestId")))
        key = _request_key(scope, decoded)
        await self._guarded(
            receive, send, lambda inner, out: self._call(scope, body, key, inner, out)
        )

    async def _call(
        self, scope: Scope, body: bytes, key: CallKey | None, receive: Receive, send: Send
    ) -> None:
        """One message through the SDK; cancellable by a later `notifications/cancelled`."""
        tracked = send if isinstance(send, _Tracked) else _Tracked(send)
        with anyio.CancelScope() as cancel:
            if key is None:
                await self.app(scope, _replay(body, receive), tracked)
                return
            with self.calls.track(key, cancel):
                await self.app(scope, _replay(body, receive), tracked)
        if cancel.cancelled_caught and key is not None:
            await tracked.end(error(json.loads(key[2]), REQUEST_CANCELLED, "request cancelled"))

    async def _guarded(
        self, receive: Receive, send: Send, handler: Callable[[Receive, _Tracked], Awaitable[None]]
    ) -> None:
        """Run `handler`; if the client hangs up before the answer is complete, cancel it."""
        gone = anyio.Event()
        tracked = _Tracked(send)

        async def inner_receive() -> Message:
            await gone.wait()
            return {"type": "http.disconnect"}

        async with anyio.create_task_group() as group:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                gone.set()
                if not tracked.finished:
                    group.cancel_scope.cancel()

            group.start_soon(watch)
            await handler(inner_receive, tracked)
            group.cancel_scope.cancel()

    async def _batch(self, scope: Scope, messages: list[Any], send: Send) -> None:
        """Each message of a 2025-03-26 batch as its own request; the answers as one array."""
        answers: list[Any] = [None] * len(messages)

        async def one(index: int, message: Any) -> None:
            answers[index] = await self._one_of_batch(scope, message)

        async with anyio.create_task_group() as group:
            for index, message in enumerate(messages):
                group.start_soon(one, index, message)
        replies = [answer for answer in answers if answer is not None]
        await _reply(send, 200 if replies else 202, replies or None)

    async def _one_of_batch(self, scope: Scope, message: Any) -> Any:
        refusal = _refusal(message, Headers(scope=scope), "2025-03-26")
        if refusal is not None:
            return refusal
        headers = [(name, value) for name, value in scope["headers"] if name != b"accept"]
        inner = {**scope, "headers": [*headers, (b"accept", b"application/json")]}
        if message.get("method") == "notifications/cancelled":
            self.calls.cancel(_key(scope, (message.get("params") or {}).get("requestId")))
        captured = _Tracked(None)
        await self._call(
            inner, json.dumps(message).encode(), _request_key(scope, message), _never, captured
        )
        return captured.answer()


class _Tracked:
    """A `send` that knows how far the response got; without `send`, it keeps the response
    (one answer of a batch)."""

    def __init__(self, send: Send | None) -> None:
        self.send = send
        self.started = False
        self.finished = False
        self.status = 0
        self.body = b""

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started, self.status = True, message["status"]
        elif message["type"] == "http.response.body":
            self.finished = not message.get("more_body", False)
            if self.send is None:
                self.body += message.get("body", b"")
        if self.send is not None:
            await self.send(message)

    async def end(self, payload: dict[str, Any]) -> None:
        """After a cancel: answer with `payload` if nothing was sent, else close the stream."""
        if not self.started:
            await _reply(self, 200, payload)
        elif not self.finished:
            await self({"type": "http.response.body", "body": b"", "more_body": False})

    def answer(self) -> Any:
        return json.loads(self.body) if self.status != 202 and self.body else None


async def _never() -> Message:
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


def _replay(body: bytes, after: Receive) -> Receive:
    """The body read already, then whatever `after` says (a disconnect, eventually)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await after()

    return receive


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it passes `limit`."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _trimmed(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Header values without surrounding whitespace (RFC 9110 §5.5)."""
    return [(name, value.strip(b" \t")) for name, value in headers]


def _refusal(message: Any, headers: Headers, version: str) -> dict[str, Any] | None:
    """The JSON-RPC error for a message we refuse before the SDK sees it, or None."""
    why = not_a_message(message)
    if why is not None:
        return error(None, INVALID_REQUEST, why)
    method = message.get("method")
    if version == MODERN_VERSION and method in TASK_METHODS:
        task_id = (message.get("params") or {}).get("taskId")
        if decode_header_value(headers.get("mcp-name")) != task_id:
            why = "the Mcp-Name header must carry the request's taskId"
            return error(message.get("id"), HEADER_MISMATCH, why)
    return None


def _request_key(scope: Scope, message: Any) -> CallKey | None:
    """The key of a request (a message with an id and a method); None for anything else."""
    if isinstance(message, dict) and "id" in message and "method" in message:
        return _key(scope, message["id"])
    return None


def _key(scope: Scope, request_id: Any) -> CallKey:
    """Whose request this is: a cancel counts only from the caller that sent the request."""
    client = scope.get("client") or ("", 0)
    token = Headers(scope=scope).get("authorization", "")
    return token, str(client[0]), json.dumps(request_id)


async def _reply(send: Send, status: int, payload: Any) -> None:
    body = b"" if payload is None else json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
