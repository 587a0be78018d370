"""Where the command line's runs happen: a runner's REST API (`--server`), or this machine's
engine through the same service the server uses.

Both give a run as one stream of events, (kind, text): "phase", "pull" (layer progress, JSON),
"stdout", "stderr", then "exit" with the final state as JSON, as `GET /runs/{id}/logs` sends them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import tempfile
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

import httpx
from httpx_sse import aconnect_sse
from pydantic import ValidationError

from runner.archives import pack_directory, pack_directory_into, unpack_directory, unpack_tar
from runner.errors import InvalidRequest, RunnerError
from runner.models import RunRequest
from runner.service import RunnerService
from runner.settings import Settings
from runner.tenancy import LOCAL

Event = tuple[str, str]
TEXT_EVENTS = ("stdout", "stderr", "phase")
JSON = "application/json"


class ClientError(Exception):
    """The run could not happen: the message says why (the runner's own message when it sent
    one)."""


class Runs(Protocol):
    def run(self, body: dict[str, Any], content: dict[str, Path]) -> AsyncGenerator[Event]:
        """Start a run of `body`, whose volumes take `content` (volume key: local path)."""
        ...

    async def save(self, status: dict[str, Any], path: str, local: Path) -> None:
        """Write a finished run's returned `path` to `local` (a directory is unpacked)."""
        ...

    def events(self, run_id: str, *, follow: bool) -> AsyncGenerator[Event]: ...

    async def list(self, state: str | None) -> list[dict[str, Any]]: ...

    async def cancel(self, run_id: str) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class RemoteRuns:
    """A runner's REST API. A run is started with POST /runs, so it outlives this process."""

    def __init__(self, server: str, token: str | None) -> None:
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        timeout = httpx.Timeout(60, read=None)  # a followed run may be quiet for hours
        self.http = httpx.AsyncClient(base_url=server, headers=headers, timeout=timeout)
        self.started: str | None = None

    async def run(self, body: dict[str, Any], content: dict[str, Path]) -> AsyncGenerator[Event]:
        """The binary path: the request and each volume's content (a file, or a directory as
        tar.gz, packed to a temporary file) as multipart parts, never base64."""
        with contextlib.ExitStack() as stack:
            parts: list[tuple[str, Any]] = [("request", (None, json.dumps(body), JSON))]
            for key, local in content.items():
                parts.append((key, (local.name, stack.enter_context(_packed(local)))))
            response = await self._send("POST", "/runs", files=parts)
        self.started = response["run_id"]
        async for event in self.events(response["run_id"], follow=True):
            yield event

    async def events(self, run_id: str, *, follow: bool) -> AsyncGenerator[Event]:
        url = f"/runs/{run_id}/logs"
        async with aconnect_sse(self.http, "GET", url, params={"follow": follow}) as source:
            if source.response.status_code != 200:
                await source.response.aread()
                raise ClientError(self._message(source.response))
            async for sse in source.aiter_sse():
                data = json.loads(sse.data) if sse.event in TEXT_EVENTS else sse.data
                yield sse.event, data

    async def save(self, status: dict[str, Any], path: str, local: Path) -> None:
        """Streamed from GET /runs/{id}/files/{path}: the file's bytes, or a tar unpacked."""
        url = f"/runs/{status['run_id']}/files{path}"
        with tempfile.TemporaryFile() as spool:
            async with self.http.stream("GET", url) as response:
                if response.is_error:
                    await response.aread()
                    raise ClientError(f"--out {path}: {self._message(response)}")
                async for chunk in response.aiter_bytes():
                    spool.write(chunk)
            spool.seek(0)
            if response.headers.get("content-type") == "application/x-tar":
                unpack_tar(spool, local)
            else:
                local.write_bytes(spool.read())

    async def list(self, state: str | None) -> list[dict[str, Any]]:
        params = {"state": state} if state else {}
        runs: list[dict[str, Any]] = (await self._send("GET", "/runs", params=params))["runs"]
        return runs

    async def cancel(self, run_id: str) -> dict[str, Any]:
        return await self._send("POST", f"/runs/{run_id}/cancel")

    async def close(self) -> None:
        await self.http.aclose()

    async def _send(self, method: str, url: str, **options: Any) -> dict[str, Any]:
        try:
            response = await self.http.request(method, url, **options)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach the runner at {self.http.base_url}: {exc}") from exc
        if response.is_error:
            raise ClientError(self._message(response))
        answer: dict[str, Any] = response.json()
        return answer

    def _message(self, response: httpx.Response) -> str:
        """The runner's message; a refused token said in the command line's terms."""
        if response.status_code == 401 and _body(response).get("error") == "unauthorized":
            where = f"the runner at {self.http.base_url}"
            if not self.token:
                return f"{where} asks for an API token: give it with --token or ONEOFF_RUNNER_TOKEN"
            return f"{where} refused the token (--token or ONEOFF_RUNNER_TOKEN): check it"
        return _message(response)


class LocalRuns:
    """This machine's engine, through the service the server uses. `run` is a plain run: its
    container goes when the run ends or this process is interrupted."""

    def __init__(self, settings: Settings) -> None:
        from backends import get_backend

        # a server on this engine never takes the CLI's runs for its own: they carry this
        # process's lease (see backends/leases.py), whatever the instance ids
        self.service = RunnerService(settings, get_backend(settings))

    async def run(self, body: dict[str, Any], content: dict[str, Path]) -> AsyncGenerator[Event]:
        volumes = body.get("volumes", {})
        for key, local in content.items():
            data = pack_directory(local) if local.is_dir() else local.read_bytes()
            volumes[key]["content"] = base64.b64encode(data).decode()
        try:
            request = RunRequest.model_validate(body)
        except ValidationError as exc:
            raise ClientError(InvalidRequest.from_validation(exc.errors()).message) from None
        self.service.keep_lease()  # else any runner's reaper takes the run for a leftover
        queue: asyncio.Queue[Event] = asyncio.Queue()
        work = asyncio.ensure_future(
            self.service.run(request, LOCAL, lambda kind, text: queue.put_nowait((kind, text)))
        )
        try:
            while not work.done() or not queue.empty():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, work}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            result = _local_result(work)
        finally:
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
        yield "exit", result

    async def save(self, status: dict[str, Any], path: str, local: Path) -> None:
        returned = status["result"]["volumes"].get(path)
        if returned is None or returned.get("error"):
            why = returned["error"] if returned else f"the run returned nothing for {path}"
            raise ClientError(f"--out {path}: {why}")
        data = base64.b64decode(returned["content"])
        if returned["type"] == "directory":
            unpack_directory(data, local)
        else:
            local.write_bytes(data)

    async def events(self, run_id: str, *, follow: bool) -> AsyncGenerator[Event]:
        await self._guard(self.service.runs.require(LOCAL, run_id))
        async for event in self.service.runs.events(LOCAL, run_id, follow=follow):
            yield event

    async def list(self, state: str | None) -> list[dict[str, Any]]:
        found = await self._guard(self.service.runs.list_runs(LOCAL, state, None, 1000))
        return [status.model_dump(mode="json") for status in found.runs]

    async def cancel(self, run_id: str) -> dict[str, Any]:
        status = await self._guard(self.service.runs.cancel(LOCAL, run_id))
        answer: dict[str, Any] = status.model_dump(mode="json")
        return answer

    async def close(self) -> None:
        await self.service.stop()

    @staticmethod
    async def _guard(work: Any) -> Any:
        try:
            return await work
        except RunnerError as exc:
            raise ClientError(exc.message) from exc


def _local_result(work: asyncio.Future[Any]) -> str:
    """The final state of a plain run, shaped as an async run's `exit` event."""
    try:
        result, _ = work.result()
    except RunnerError as exc:
        raise ClientError(exc.message) from exc
    state = "timeout" if result.timed_out else "succeeded" if result.exit_code == 0 else "failed"
    status = {"run_id": result.run_id, "state": state, "result": result.model_dump(mode="json")}
    return json.dumps(status)


@contextlib.contextmanager
def _packed(local: Path) -> Iterator[IO[bytes]]:
    """A local file opened, or a directory packed as tar.gz into a temporary file."""
    if local.is_file():
        with local.open("rb") as opened:
            yield opened
        return
    with tempfile.TemporaryFile() as packed:
        pack_directory_into(local, packed)
        packed.seek(0)
        yield packed


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(response: httpx.Response) -> str:
    body = _body(response)
    if not body:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    return str(body.get("message") or body)
