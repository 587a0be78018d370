"""Content in and out of runs through the engine's archive API, never through host paths.

In: every file and directory mount's content goes into one volume per run, unpacked there by a
container that is created but never started (from a tiny image imported locally once, so no
registry is needed); the run then gets bind mounts of that volume's paths, so `:ro` holds.
Out: `response: true` paths are copied from the stopped container and re-packed as tar.gz.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import docker
import requests
from docker.types import Mount

from backends.docker.errors import content_refused, engine_errors
from runner import archive_streams, archives
from runner.backend import ROLE
from runner.spec import MountSpec, ReturnedFile, RunSpec

CARRIER_IMAGE = "oneoff-runner/carrier"
CARRIER_TAG = "1"
ARCHIVE_CHUNK_BYTES = 1024 * 1024
Tar = bytes | Iterator[bytes]
"""A tar for the archive API: whole, or as chunks streamed to the engine as they come."""


class ContentCopier:
    def __init__(self, api: Callable[[], docker.APIClient]) -> None:
        self.api = api
        self._carrier_ready = False

    def volume_for(self, spec: RunSpec, labels: dict[str, str]) -> str | None:
        """Create and fill the run's volume with every file and directory mount's content.

        Entry `<n>` of the volume holds mount `n`: a file, or a directory the tar.gz unpacks into.
        """
        entries: list[tuple[str, bytes | None, int]] = []
        unpack: list[tuple[str, Tar]] = []
        empty_dir_mode = 0o777 if spec.user not in (None, "", "root", "0", "0:0") else 0o755
        for index, mount in enumerate(spec.mounts):
            if mount.kind == "file" and mount.content is not None:
                entries.append((str(index), mount.content, mount.mode))
            elif mount.kind == "directory":
                entries.append((str(index), None, empty_dir_mode))
                if mount.content:
                    unpack.append((str(index), mount.content))
        if not entries and spec.uploads is None:
            return None
        name = f"oneoff-{spec.run_id}"
        with engine_errors("creating the run's volume"):
            self.api().create_volume(name, driver="local", labels=labels)
        skeleton = ("", archives.tar_of(entries))
        try:
            self.fill_volume(name, itertools.chain([skeleton], unpack, spec.uploads or ()), labels)
        except BaseException:
            # refused content (checked as it streams) fails here: the volume is not the run's yet
            with engine_errors("removing the run's volume"):
                self.api().remove_volume(name, force=True)
            raise
        return name

    def fill_volume(
        self, volume: str, parts: Iterable[tuple[str, Tar]], labels: dict[str, str]
    ) -> None:
        """Unpack tars into `volume` through a container that is created but never started."""
        self._ensure_carrier_image()
        with engine_errors("copying content into the volume", content_refused):
            carrier = self.api().create_container(
                f"{CARRIER_IMAGE}:{CARRIER_TAG}",
                command=["/carrier-is-never-started"],
                labels={**labels, ROLE: "carrier"},
                network_disabled=True,
                use_config_proxy=False,
                host_config=self.api().create_host_config(
                    mounts=[Mount(target="/v", source=volume, type="volume")]
                ),
            )["Id"]
            try:
                for subpath, data in parts:
                    self.api().put_archive(carrier, f"/v/{subpath}".rstrip("/"), data)
            finally:
                self.api().remove_container(carrier, force=True)

    def _ensure_carrier_image(self) -> None:
        """Import, once, the tiny local image carriers are made from: no registry needed."""
        if self._carrier_ready:
            return
        with engine_errors("preparing the carrier image"):
            try:
                self.api().inspect_image(f"{CARRIER_IMAGE}:{CARRIER_TAG}")
            except docker.errors.ImageNotFound:
                data = archives.tar_of([("v", None, 0o755)])
                self.api().import_image_from_data(data, repository=CARRIER_IMAGE, tag=CARRIER_TAG)
        self._carrier_ready = True

    def returned(self, spec: RunSpec, container: str) -> dict[str, tuple[str, bytes]]:
        returned: dict[str, tuple[str, bytes]] = {}
        budget = spec.max_response_bytes
        for mount in spec.mounts:
            if not mount.response:
                continue
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

    def spooled(self, spec: RunSpec, container: str) -> dict[str, ReturnedFile]:
        """Every `response: true` path, spooled (to disk past a MiB) so that the container can
        go before the caller has read them."""
        spooled: dict[str, ReturnedFile] = {}
        budget = spec.max_response_bytes
        try:
            for mount in spec.mounts:
                if mount.response:
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
        url = f"{self.api().base_url}/v{self.api().api_version}/containers/{container}/archive"
        # identity: otherwise the engine gzips the stream (slowly) only for us to inflate it
        headers = {"Accept-Encoding": "identity"}
        response = self.api().get(url, params={"path": path}, stream=True, headers=headers)
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
