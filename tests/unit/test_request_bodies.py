"""Run request bodies: admission answers before a body is read, and a multipart request whose
JSON part is bad is refused before its content parts are read."""

from __future__ import annotations

import json
import selectors
import socket
import threading
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest
from starlette.requests import Request

from api_app import create_app
from runner.errors import InvalidRequest
from runner.rest.bodies import _body
from runner.rest.multipart import read_run_form
from tests.fakes import FakeBackend, outcome
from tests.helpers import LocalClient, run_body, serving


class Body:
    """A request body that notes how much of it the server asked for."""

    def __init__(self, head: bytes, chunks: int) -> None:
        self.head = head
        self.chunks = chunks
        self.served = 0

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        for _ in range(self.chunks):
            self.served += 1
            yield b" " * 65536


def test_a_full_runner_answers_429_before_reading_a_large_body(make_settings):
    entered = threading.Event()
    release = threading.Event()

    def blocking(spec, control):  # type: ignore[no-untyped-def]
        entered.set()
        release.wait(10)
        return outcome()

    settings = make_settings(max_concurrent_runs=1, max_queued_runs=0)
    with LocalClient(create_app(settings, backend=FakeBackend(blocking))) as api:
        busy = threading.Thread(target=api.post, args=("/run",), kwargs={"json": run_body("x")})
        busy.start()
        assert entered.wait(10)
        body = Body(json.dumps(run_body("x")).encode(), chunks=64)
        refused = api.post("/run", content=body, headers={"content-type": "application/json"})
        release.set()
        busy.join(10)
    assert refused.status_code == 429
    assert body.served < body.chunks


@pytest.mark.anyio
async def test_a_multipart_request_with_a_bad_json_part_is_422_before_its_content_is_read():
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="request"\r\n\r\n'
        '{"image": "", "pull_policy": "never"}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="/d"\r\n\r\n'
    ).encode()
    body = iter(Body(head, chunks=64))

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": next(body), "more_body": True}

    headers = [(b"content-type", f"multipart/form-data; boundary={boundary}".encode())]
    request = Request({"type": "http", "method": "POST", "headers": headers}, receive)
    with pytest.raises(InvalidRequest) as caught:
        await read_run_form(request, 10**6)
    assert caught.value.field == "image"
    assert next(body) == b" " * 65536  # the content part was never asked for


def test_the_openapi_document_describes_both_request_bodies(api):
    content = api.get("/openapi.json").json()["paths"]["/run"]["post"]["requestBody"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/RunRequest"}
    assert "request" in content["multipart/form-data"]["schema"]["properties"]
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    assert "RunRequest" in schemas and "VolumeSpec" in schemas


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("declared", "why"),
    [
        (None, "no Content-Length (chunked): the buffer grows as the body comes"),
        (30, "the Content-Length the body has"),
        (12, "more bytes than declared"),
        (1000, "fewer bytes than declared"),
        (10**9, "a Content-Length over the limit is not trusted for the buffer's size"),
    ],
)
async def test_a_json_body_is_read_whole_whatever_its_content_length_says(declared, why):
    chunks = iter([b"0123456789", b"abcdefghij", b"ABCDEFGHIJ", b""])

    async def receive() -> dict[str, object]:
        chunk = next(chunks)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunk)}

    headers = [] if declared is None else [(b"content-length", str(declared).encode())]
    request = Request({"type": "http", "method": "POST", "headers": headers}, receive)
    body = await _body(request, limit=10**6)
    assert body == b"0123456789abcdefghijABCDEFGHIJ", why
    assert type(body) is bytes  # model_validate_json would copy a bytearray first


@pytest.mark.anyio
async def test_a_json_body_is_held_once_while_it_is_read():
    """Traced allocations while a 4 MiB body is read: the buffer, and no second copy of it (a
    bytearray handed to model_validate_json, or a join of chunks, would be one)."""
    size, chunk = 4 * 2**20, b"x" * 65536
    chunks = iter([chunk] * (size // len(chunk)) + [b""])

    async def receive() -> dict[str, object]:
        data = next(chunks)
        return {"type": "http.request", "body": data, "more_body": bool(data)}

    headers = [(b"content-length", str(size).encode())]
    request = Request({"type": "http", "method": "POST", "headers": headers}, receive)
    tracemalloc.start()
    try:
        body = await _body(request, limit=10**9)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(body) == size
    assert peak < 1.25 * size, peak


def test_slow_bodies_never_take_the_queue_past_its_limit(make_settings):
    """A place is taken before a body is read: bodies that never finish hold places, but no
    more than the free slots and the queue, and the queued gauge stays within its limit."""
    settings = make_settings(max_concurrent_runs=2, max_queued_runs=3)
    head = json.dumps(run_body("true")).encode()[:10]
    with serving(create_app(settings, backend=FakeBackend())) as port:
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
        try:
            for connection in slow:
                connection.sendall(
                    b"POST /run HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000\r\n\r\n" + head
                )
            answered = _answered(slow, count=5)
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        finally:
            for connection in slow:
                connection.close()
    assert all(answer.startswith(b"HTTP/1.1 429") for answer in answered)
    assert "oneoff_runner_runs_queued 3.0" in metrics


def _answered(connections: list[socket.socket], count: int) -> list[bytes]:
    """The first bytes of the first `count` answers, as they arrive."""
    with selectors.DefaultSelector() as selector:
        for connection in connections:
            selector.register(connection, selectors.EVENT_READ)
        answers: list[bytes] = []
        while len(answers) < count:
            ready = selector.select(timeout=30)
            assert ready, f"only {len(answers)} of {count} requests were answered"
            for key, _ in ready:
                answers.append(key.fileobj.recv(64))  # type: ignore[union-attr]
                selector.unregister(key.fileobj)
    return answers
