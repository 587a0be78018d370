"""Where a run's mounts will land, checked in its created container before it starts.

The policy refuses targets at or under /dev, /proc and /sys as they are written
(`runner.policy.NEVER_TARGETS`). The runtime resolves each target inside the container when it
starts (runc: `securejoin` in the root filesystem, shallower mounts first, each seeing those
mounted before it), so a symlink on the way, in the image, the run's content or a volume mounted
above, takes a mount wherever it points: `/work/shm -> /dev/shm` puts host disk where the
memory-backed `/dev/shm` was. The engine's archive stat sees the created container as the
runtime will (its volumes mounted in the same order) and tells where a symlink leads, resolved
in the same scope. So each target is walked a component at a time, following symlinks, and the
run is refused when a mount would land at or under /dev, /proc or /sys, or inside a named volume
or host path (their content may change before the run starts, so what was checked would not
be what the runtime sees). Only runs with mounts pay for it: one stat per path on the way.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
from collections.abc import Callable

import docker
import requests

from backends.docker.errors import engine_errors
from backends.docker.returned import archive_url
from runner.errors import InvalidRequest, RunnerError
from runner.policy import NEVER_TARGETS, SHARED_KINDS, outside_shared, within_path
from runner.spec import MountSpec

MAX_LINKS = 40
"""Symlinks followed on the way to one target, as the kernel's MAXSYMLINKS."""
STAT_HEADER = "X-Docker-Container-Path-Stat"
LOOKING = "looking at a mount's path in the container"

LinkOf = Callable[[str], str | None]
"""Where the symlink at a path leads, resolved in the container; None: no symlink there."""


class Unresolvable(Exception):
    """A path leads through more symlinks than the kernel would follow."""


def check_targets(mounts: list[MountSpec], link_of: LinkOf) -> None:
    """Refuse the run if one of its `mounts` would land where the policy refuses a target
    (`InvalidRequest` naming the volume key), or inside a named volume or host path."""
    walks = {mount.key: _walk(mount, link_of) for mount in mounts}
    shared = [(mount, walks[mount.key][-1]) for mount in mounts if mount.kind in SHARED_KINDS]
    for mount in mounts:
        for path in walks[mount.key]:
            _allowed_landing(mount, path, shared)


def _walk(mount: MountSpec, link_of: LinkOf) -> list[str]:
    field = f"volumes[{mount.key!r}]"
    try:
        return walk(mount.path, link_of)
    except Unresolvable as exc:
        raise InvalidRequest(
            f"{field}: {mount.path} {exc} in the container; mount it at another path",
            field=field,
        ) from None


def walk(target: str, link_of: LinkOf) -> list[str]:
    """`target`, then the path it leads to after each symlink on its way, the last where the
    runtime mounts it; the walk stops as it enters a path the policy refuses."""
    path, resolved, walked = target, 0, [target]
    for _ in range(MAX_LINKS + 1):
        parts = path.strip("/").split("/")
        for index in range(resolved, len(parts)):
            link = link_of("/" + "/".join(parts[: index + 1]))
            if link is not None:
                path = posixpath.join(link, *parts[index + 1 :])
                resolved = len(link.strip("/").split("/")) if link != "/" else 0
                walked.append(path)
                break
        else:
            return walked
        if _refused(path):
            return walked
    raise Unresolvable(f"leads through more than {MAX_LINKS} symlinks")


def _allowed_landing(mount: MountSpec, path: str, shared: list[tuple[MountSpec, str]]) -> None:
    field = f"volumes[{mount.key!r}]"
    never = _refused(path)
    if never is not None:
        raise InvalidRequest(
            f"{field}: {mount.path} leads through a symlink in the container (its image, "
            f"content or a volume) to {path}, at or under {never}, which the kernel and the "
            "runtime provide; mount it at a path with no symlink to there on the way",
            field=field,
        )
    outside_shared(mount, path, shared)


def _refused(path: str) -> str | None:
    return next((never for never in NEVER_TARGETS if within_path(path, never)), None)


def link_reader(api: docker.APIClient, container: str, targets: list[str]) -> LinkOf:
    """`LinkOf` for a created container, from the engine's stat of each path (asked once);
    `targets`: its mounts' paths, named when the engine cannot mount them to look."""
    url, seen = archive_url(api, container), dict[str, str | None]()

    def link_of(path: str) -> str | None:
        if path not in seen:
            with engine_errors(LOOKING):
                response = api.head(url, params={"path": path})
            if response.status_code not in (200, 404):
                _unmountable(api, container, path, targets)
            seen[path] = _link(response.status_code, response.headers.get(STAT_HEADER))
        return seen[path]

    return link_of


def _link(status: int, header: str | None) -> str | None:
    if status == 404:
        return None  # the runtime makes the rest: directories, no symlinks
    try:
        stat = json.loads(base64.b64decode(header or "", validate=True))
    except (binascii.Error, ValueError):
        stat = None
    target = stat.get("linkTarget") if isinstance(stat, dict) else None
    if not isinstance(target, str) or not (target == "" or target.startswith("/")):
        raise RunnerError(f"the Docker engine failed while {LOOKING}: its stat is unreadable")
    return target or None


def _unmountable(api: docker.APIClient, container: str, path: str, targets: list[str]) -> None:
    """The engine mounts all the run's volumes to look at any path, and could not: the same
    archive call with a body says why (a HEAD has none), as the start would."""

    def refused(message: str) -> InvalidRequest:
        return InvalidRequest(
            f"volumes: the run's mounts ({', '.join(json.dumps(target) for target in targets)}) "
            f"cannot be put in place ({message}); a file cannot go where the image has a "
            "directory, nor a directory where it has a file, and no symlink loop may be on the "
            "way: choose another container path",
            field="volumes",
        )

    with engine_errors(LOOKING, refused):
        response = api.get(archive_url(api, container), params={"path": path}, stream=True)
        if not response.ok:  # its small body holds the engine's words
            why = _message(response)
            raise docker.errors.APIError(why, response=response, explanation=why)
        response.close()
    raise RunnerError(f"the Docker engine failed while {LOOKING}: a stat, then not")


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    return str(body.get("message", body)) if isinstance(body, dict) else response.text
