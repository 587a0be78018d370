"""Content into runs through the engine's archive API, never through host paths.

A run's file and directory content goes one of two ways:

- Straight into its container (`into_container`) when every mount of the run is a writable
  file or directory, none at or inside another's path, and the created container has nothing
  at those paths: the content is unpacked into the container itself, so nothing else is made
  and nothing else must be removed.
- Through a run volume (`volume_for`) otherwise: `:ro` content, content beside named volumes or
  host paths, or a path the image already has (a mount hides what the image has there, where
  an unpacked archive would mix with it). All the run's content goes into one volume, unpacked
  there by a carrier container (created, never started, from a tiny image imported locally
  once, so no registry is needed); the run gets bind mounts of the volume's paths, so `:ro`
  holds. Mount `n` lives at `<n>/<its container path>` in the volume.

Content at a path inside a writable named volume of the run (`into_volumes`) is written into
that volume instead, by the same carrier and archive call: a workspace keeps the files a run
was given (a bind mount there would leave only an empty placeholder in the volume).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import docker
from docker.types import Mount

from backends.docker import inventory
from backends.docker.errors import content_refused, engine_errors, exists
from backends.docker.returned import archive_url
from backends.labels import CARRIER_ROLE, ROLE
from runner import archive_streams, archives
from runner.archives import Budget
from runner.errors import VolumeNotFound
from runner.spec import Arriving, MountSpec, RunSpec, into_volumes
from runner.uploads import relative_path

CARRIER_IMAGE = "oneoff-runner/carrier"
CARRIER_TAG = "1"
Tar = bytes | Iterator[bytes]
"""A tar for the archive API: whole, or as chunks streamed to the engine as they come."""


RUNTIME_PATHS = ("/dev", "/proc", "/sys", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf")
"""What the engine and the runtime mount over a container's own files when it starts: content
unpacked there would be hidden, where a mount of the run's own takes the place."""


def straight_in(spec: RunSpec) -> bool:
    """Whether the run's content may go straight into its container: every mount a writable
    file or directory, none at, inside or above another's path or a runtime path."""
    if any(mount.kind not in ("file", "directory") or mount.read_only for mount in spec.mounts):
        return False
    paths = [mount.path.rstrip("/") for mount in spec.mounts]
    others = [(i, path) for i, path in enumerate(paths)] + [(-1, path) for path in RUNTIME_PATHS]
    return not any(i != j and _overlap(a, b) for i, a in enumerate(paths) for j, b in others)


def _overlap(a: str, b: str) -> bool:
    return a == b or b.startswith(f"{a}/") or a.startswith(f"{b}/")


def bind_source(root: str, index: int, mount: MountSpec) -> str:
    """Where mount `index` lives in the run volume whose engine path is `root`."""
    return f"{root}/{index}/{relative_path(mount)}"


def content_tar(
    spec: RunSpec, uploads: Arriving | None, prefix: Callable[[int], str]
) -> Iterator[bytes]:
    """All the run's file and directory content as one plain tar, so that one archive call
    unpacks it (each costs the engine a process): mount `n` at its container path under
    `prefix(n)`; directories (with their mode, then their inline archives) and inline files
    first, then the parts as they arrive. Read once."""
    directory_mode = 0o777 if spec.user not in (None, "", "root", "0", "0:0") else 0o755
    for index, mount in enumerate(spec.mounts):
        name = prefix(index) + relative_path(mount)
        if mount.kind == "directory":
            yield archive_streams.entry(name, None, directory_mode)
            if mount.content:
                yield from _inline_members(mount, f"{name}/")
        elif mount.kind == "file" and mount.content is not None:
            yield archive_streams.entry(name, mount.content, mount.mode)
    for index, members in uploads or ():
        yield from members(prefix(index))
    yield archive_streams.TAR_END


def _inline_members(mount: MountSpec, prefix: str) -> Iterator[bytes]:
    """A directory's inline archive (checked when the request was resolved) as members."""
    assert mount.content is not None
    field = f"volumes[{mount.key!r}].content"
    reader = archive_streams.ChunkReader(iter([mount.content]), len(mount.content), field)
    unlimited = Budget(sys.maxsize, sys.maxsize)
    return archive_streams.checked_members(reader, field, unlimited, prefix)


class ContentCopier:
    def __init__(self, api: Callable[[], docker.APIClient]) -> None:
        self.api = api
        self._carrier_ready = False

    def into_container(self, spec: RunSpec, uploads: Arriving | None, container: str) -> bool:
        """Unpack the run's content (inline, and `uploads` as they arrive) into its created, not
        yet started, container; False, with nothing written, when the container has something
        at one of the paths already."""
        if not all(self.absent(container, mount.path) for mount in spec.mounts):
            return False
        if spec.mounts or uploads is not None:
            tar = content_tar(spec, uploads, lambda index: "")
            with engine_errors("copying content into the container", content_refused):
                self.api().put_archive(container, "/", tar)
        return True

    def mounts(self, spec: RunSpec, volume: str | None) -> list[Mount]:
        """The run's mounts: its named volumes and host paths, and, with a run `volume`, the
        volume's paths for its file and directory content (not what went into a named
        volume: `into_volumes`)."""
        root = None
        if volume is not None:
            with engine_errors("inspecting the run's volume"):
                root = self.api().inspect_volume(volume)["Mountpoint"]
        kept = into_volumes(spec)
        made = (
            self._mount(index, mount, None if index in kept else root)
            for index, mount in enumerate(spec.mounts)
        )
        return [mount for mount in made if mount is not None]

    def _mount(self, index: int, mount: MountSpec, root: str | None) -> Mount | None:
        if mount.kind in ("file", "directory"):
            if root is None:
                return None  # its content is in the container itself, or in a named volume
            source = bind_source(root, index, mount)
            return Mount(mount.path, source, type="bind", read_only=mount.read_only)
        if mount.kind == "volume":
            self._require_volume(mount)
            return Mount(mount.path, mount.name, type="volume", read_only=mount.read_only)
        return Mount(mount.path, mount.host_path, type="bind", read_only=mount.read_only)

    def _require_volume(self, mount: MountSpec) -> None:
        """The engine would silently create a missing named volume; refuse instead."""
        if not exists("named volume", self.api().inspect_volume, str(mount.name)):
            raise VolumeNotFound(
                f"volumes[{mount.key!r}].name: volume {mount.name!r} does not exist; "
                "create it first (POST /volume)",
                field=f"volumes[{mount.key!r}].name",
            )

    def absent(self, container: str, path: str) -> bool:
        """Whether the container has nothing at `path`: the engine's stat of it is a 404."""
        api = self.api()
        with engine_errors("looking at a path of the container"):
            response = api.head(archive_url(api, container), params={"path": path})
        return response.status_code == 404

    def volume_for(
        self, spec: RunSpec, uploads: Arriving | None, labels: dict[str, str]
    ) -> str | None:
        """Fill the run's content in: into the named volumes that hold it (`into_volumes`),
        and the rest into a run volume made for it, all in one archive call; the run volume,
        or None when the run needs none."""
        kept = into_volumes(spec)
        content = [i for i, m in enumerate(spec.mounts) if m.kind in ("file", "directory")]
        beside = [self._carried(spec.mounts[at], at) for at in sorted(set(kept.values()))]
        if not content and uploads is None:
            return None
        own = "v/" if kept else ""  # the run volume is at /v when the carrier has others
        tar = content_tar(spec, uploads, lambda i: f"w/{kept[i]}/" if i in kept else f"{own}{i}/")
        if kept and all(index in kept for index in content):
            self.unpack(tar, labels, beside)
            return None
        name = f"oneoff-{spec.run_id}"
        self.new_volume(name, tar, labels, "the run's volume", beside)
        return name

    def _carried(self, mount: MountSpec, index: int) -> Mount:
        """A named volume of the run in the carrier: at `/w/<index>` + its path in the run, so
        that its content's names in the run's tar (`w/<index>/<container path>`) land in it."""
        self._require_volume(mount)
        return Mount(f"/w/{index}{mount.path.rstrip('/')}", mount.name, type="volume")

    def new_volume(
        self, name: str, tar: Tar, labels: dict[str, str], what: str, beside: Sequence[Mount] = ()
    ) -> dict[str, Any]:
        """A volume of the runner's own (`inventory.make_own_volume`) filled with `tar`; the
        engine's description of it. Removed again when filling fails (refused content is
        checked as it streams, so it fails here). With `beside` (other mounts of the carrier)
        the tar is unpacked at `/`, the new volume being at `/v`; else in the volume."""
        made = inventory.make_own_volume(self.api(), name, labels, what)
        try:
            mounts = [Mount(target="/v", source=name, type="volume"), *beside]
            self.unpack(tar, labels, mounts, "/" if beside else "/v")
        except BaseException:
            with engine_errors(f"removing {what}"):
                self.api().remove_volume(name, force=True)
            raise
        return made

    def fill_volume(self, volume: str, tar: Tar, labels: dict[str, str]) -> None:
        """Unpack a tar into `volume` through a container that is created but never started."""
        self.unpack(tar, labels, [Mount(target="/v", source=volume, type="volume")], "/v")

    def unpack(self, tar: Tar, labels: dict[str, str], mounts: list[Mount], at: str = "/") -> None:
        """Unpack a tar at `at` in a carrier with these mounts, removed afterwards."""
        with engine_errors("copying content into the volume", content_refused):
            carrier = self.carrier({**labels, ROLE: CARRIER_ROLE}, mounts=mounts)
            try:
                self.api().put_archive(carrier, at, tar)
            finally:
                self.api().remove_container(carrier, force=True)

    def carrier(self, labels: dict[str, str], name: str | None = None, **host: Any) -> str:
        """A container from the carrier image, created and never started (it has nothing to
        run): what volumes are filled through, and what keeps an async run's result. `host`:
        its host config (mounts, storage_opt)."""
        self._ensure_carrier_image()
        created = self.api().create_container(
            f"{CARRIER_IMAGE}:{CARRIER_TAG}",
            command=["/carrier-is-never-started"],
            name=name,
            labels=labels,
            network_disabled=True,
            use_config_proxy=False,
            host_config=self.api().create_host_config(**host),
        )
        return str(created["Id"])

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
