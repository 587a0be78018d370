"""MCP over stdin and stdout (`oneoff-runner mcp --stdio`), with the HTTP door's limits.

The SDK's stdio transport reads a whole line before it looks at it (a 300 MiB line took the
server to 1.27 GB) and drops a line it cannot read without a word, so the client waits
forever. Here stdin is read in chunks and split into lines (newline-delimited JSON-RPC):

- a line over `RUNNER_MAX_REQUEST_BYTES` is answered with -32600 as soon as it passes the
  limit, and the rest of it is skipped as it arrives: memory stays within the limit;
- a line that is not JSON is -32700 (parse error), one that is JSON but not a message the
  runner answers (`runner.mcp.jsonrpc`) is -32600, both with id `null`;
- either way the next line is served as usual. Blank lines are skipped.

While serving, fd 1 points at stderr, so stray output of the process never corrupts the wire.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.lowlevel import Server
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from runner.mcp.jsonrpc import INVALID_REQUEST, PARSE_ERROR, SHAPE, TOO_DEEP, not_a_message

CHUNK_BYTES = 64 * 1024


async def serve(server: Server, max_bytes: int) -> None:
    """Serve `server` on this process's stdin and stdout until stdin ends."""
    with _wire() as (wire_in, wire_out):
        to_server, from_client = anyio.create_memory_object_stream[SessionMessage | Exception]()
        to_client, from_server = anyio.create_memory_object_stream[SessionMessage]()
        async with anyio.create_task_group() as group:
            group.start_soon(_write, wire_out, from_server)
            group.start_soon(_read, wire_in, max_bytes, to_server, to_client.clone())
            await server.run(from_client, to_client, server.create_initialization_options())
            await to_client.aclose()


@contextlib.contextmanager
def _wire() -> Iterator[tuple[int, int]]:
    """(stdin, stdout) for the protocol alone: fd 1 points at stderr meanwhile."""
    wire_in, wire_out = os.dup(0), os.dup(1)
    os.dup2(2, 1)
    try:
        yield wire_in, wire_out
    finally:
        os.dup2(wire_out, 1)
        os.close(wire_out)
        os.close(wire_in)


async def _read(
    wire: int,
    max_bytes: int,
    to_server: MemoryObjectSendStream[SessionMessage | Exception],
    to_client: MemoryObjectSendStream[SessionMessage],
) -> None:
    """Each line of `wire`: a message for the server, or an error answered here."""
    async with to_server, to_client:
        async for line in _lines(wire, max_bytes):
            if line is None:
                why = f"request over {max_bytes} bytes (RUNNER_MAX_REQUEST_BYTES); send less"
                await to_client.send(SessionMessage(_error(INVALID_REQUEST, why)))
            elif line.strip():
                message = _message(line)
                stream = to_client if isinstance(message, types.JSONRPCError) else to_server
                await stream.send(SessionMessage(message))


def _message(line: bytearray) -> types.JSONRPCMessage:
    """The message on `line`, or the error (id null) that answers it."""
    try:
        decoded = json.loads(line)
    except RecursionError:
        return _error(PARSE_ERROR, TOO_DEEP)
    except ValueError as exc:  # UnicodeDecodeError too
        return _error(PARSE_ERROR, f"Parse error: the line is not JSON ({exc})")
    why = not_a_message(decoded)
    if why is not None:
        return _error(INVALID_REQUEST, why)
    try:
        message: types.JSONRPCMessage = types.jsonrpc_message_adapter.validate_python(
            decoded, by_name=False
        )
    except ValidationError:
        return _error(INVALID_REQUEST, SHAPE)
    return message


def _error(code: int, message: str) -> types.JSONRPCError:
    return types.JSONRPCError(
        jsonrpc="2.0", id=None, error=types.ErrorData(code=code, message=message)
    )


async def _lines(wire: int, max_bytes: int) -> AsyncIterator[bytearray | None]:
    """The lines of `wire` without their newline, or None for one over `max_bytes` (at once,
    then its rest is skipped). A line is only good until the next is asked for: its buffer is
    reused, so that no line is ever held twice."""
    line = bytearray()
    skipping = False
    while chunk := await anyio.to_thread.run_sync(
        os.read, wire, CHUNK_BYTES, abandon_on_cancel=True
    ):
        *ended, rest = chunk.split(b"\n")
        for part in ended:
            if not skipping:
                line += part
                yield line if len(line) <= max_bytes else None
            line.clear()
            skipping = False
        if not skipping:
            line += rest
            if len(line) > max_bytes:
                line.clear()
                skipping = True
                yield None
    if line:
        yield line


async def _write(wire: int, messages: MemoryObjectReceiveStream[SessionMessage]) -> None:
    """Each message as one line of JSON on `wire`, until every sender is done."""
    async with messages:
        async for message in messages:
            data = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
            await anyio.to_thread.run_sync(_write_all, wire, data.encode())


def _write_all(wire: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(wire, view) :]
