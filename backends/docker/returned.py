"""Returned paths (`response: true`) out of a run's stopped container, through the engine's
archive API: re-packed as tar.gz for the JSON answer, or streamed as the file's bytes or a
plain tar for the binary path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import docker
import requests

from backends.docker.errors import engine_errors
from runner import archive_streams, archives
from runner.spec import CollectSpec, MountSpec, ReturnedFile

ARCHIVE_CHUNK_BYTES = 1024 * 1024


def archive_url(api: docker.APIClient, container: str) -> str:
    return f"{api.base_url}/v{api.api_version}/containers/{container}/archive"


class ReturnedPaths:
    def __init__(self, api: Callable[[], docker.APIClient]) -> None:
        self.api = api

    def returned(self, collect: CollectSpec, container: str) -> dict[str, tuple[str, bytes]]:
        returned: dict[str, tuple[str, bytes]] = {}
        budget = collect.max_response_bytes
        for mount in collect.returned:
            with self._reading(container, mount, budget) as reader:
                if mount.kind == "file":
                    content = archives.file_from_tar_stream(reader)
                else:
                    content = archives.directory_tar_gz_from_stream(reader, _dirname(mount))
            budget -= len(content)
            returned[mount.path] = (mount.kind, content)
        return returned

    def stream(self, container: str, mount: MountSpec, limit: int) -> Iterator[bytes]:
        """A returned path as the engine hands it out: the file's bytes, or a plain tar with
        names relative to the directory; past `limit` bytes, a 413."""
        with self._reading(container, mount, limit) as reader:
            if mount.kind == "file":
                yield from archive_streams.file_stream(reader)
            else:
                yield from archive_streams.relative_tar_stream(reader, _dirname(mount))

    def spooled(self, collect: CollectSpec, container: str) -> dict[str, ReturnedFile]:
        """Every `response: true` path, spooled (to disk past a MiB) so that the container can
        go before the caller has read them."""
        spooled: dict[str, ReturnedFile] = {}
        budget = collect.max_response_bytes
        try:
            for mount in collect.returned:
                spool = archive_streams.spool()
                spooled[mount.path] = (mount.kind, spool)
                for chunk in self.stream(container, mount, budget):
                    spool.write(chunk)
                budget -= spool.tell()
                spool.seek(0)
        except BaseException:
            for _, spool in spooled.values():
                spool.close()
            raise
        return spooled

    @contextmanager
    def _reading(
        self, container: str, mount: MountSpec, limit: int
    ) -> Iterator[archive_streams.ChunkReader]:
        """The engine's tar of a returned path, as a reader that stops at `limit` bytes."""
        with (
            engine_errors(f"copying {mount.path} out of the container"),
            self._archive(container, mount.path) as chunks,
        ):
            yield archive_streams.ChunkReader(chunks, limit, f"volumes[{mount.key!r}]")

    @contextmanager
    def _archive(self, container: str, path: str) -> Iterator[Iterator[bytes]]:
        """The engine's tar of `path`, as chunks; the HTTP response is closed on exit.

        docker-py's `get_archive` hands out a generator that leaves the response open when it
        is not drained (we stop at the size limit), and the engine then will not remove the
        container until the stream ends; so the request is made here, on the client's session.
        """
        api = self.api()
        # identity: otherwise the engine gzips the stream (slowly) only for us to inflate it
        headers = {"Accept-Encoding": "identity"}
        response = api.get(
            archive_url(api, container), params={"path": path}, stream=True, headers=headers
        )
        try:
            try:
                response.raise_for_status()
            except requests.exceptions.HTTPError as exc:
                raise docker.errors.create_api_error_from_http_exception(exc) from exc
            yield response.iter_content(ARCHIVE_CHUNK_BYTES)
        finally:
            response.close()


def _dirname(mount: MountSpec) -> str:
    """The name the engine gives a directory's members: `<last part of the path>/...`."""
    return mount.path.rsplit("/", 1)[-1]
