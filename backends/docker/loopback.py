"""Runs without a network, started without the engine's network set-up.

For `network: none` the engine still builds a network sandbox for every container: libnetwork
makes a namespace, binds it, brings its loopback up and writes hosts and resolv.conf files for
it. That is about half of the start of an `echo hi` here (Docker 20.10: start 219 → 99 ms). A
container created with networking disabled gets a fresh namespace from the runtime instead: the
same isolation (a namespace of its own holding only a loopback, which runc brings up), without
the sandbox, but also without an /etc/hosts, so `localhost` would not resolve. So each runner
keeps one small volume holding a hosts file like the one the engine writes for `network: none`,
and binds that file read-only at /etc/hosts in its runs (the way a run volume's files are bound
from the volume's engine path, `content.bind_source`). Read-only because every run of the runner
shares it: one run cannot leave an entry for the next.

The volume carries the runner's owner label: it goes when the runner stops, or is reaped once
its lease is gone. Removed behind the runner's back (`docker volume prune`), it is made again,
under a new random name; no caller can take such a name (`RESERVED_VOLUME_NAMES`), and a volume
of that name that is not the runner's is never used (`inventory.make_own_volume`).
A run that names a network, or mounts its own /etc/hosts, takes the engine's way, as does any
run while the file cannot be made.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

import docker
from docker.types import Mount

from backends.docker.content import ContentCopier
from backends.docker.errors import exists
from backends.labels import HOSTS_ROLE, INSTANCE, MANAGED, ROLE
from backends.leases import Lease
from runner.archives import tar_of
from runner.errors import RunnerError
from runner.spec import RunSpec

log = logging.getLogger("oneoff_runner.docker")

HOSTS_PATH = "/etc/hosts"
HOSTS = (
    b"127.0.0.1\tlocalhost\n"
    b"::1\tlocalhost ip6-localhost ip6-loopback\n"
    b"fe00::0\tip6-localnet\n"
    b"ff00::0\tip6-mcastprefix\n"
    b"ff02::1\tip6-allnodes\n"
    b"ff02::2\tip6-allrouters\n"
)
"""What the engine writes for a container with `network: none`."""


class Loopback:
    def __init__(
        self,
        api: Callable[[], docker.APIClient],
        content: ContentCopier,
        lease: Lease,
        instance: str,
    ) -> None:
        self._api = api
        self._content = content
        self._lease = lease
        self._instance = instance
        self._lock = threading.Lock()
        self._keeping = threading.Lock()
        self._kept = False
        self._closed = False
        self._volume: str | None = None
        self._source: str | None = None

    def hosts(self, spec: RunSpec) -> Mount | None:
        """The bind of the runner's hosts file for a run without a network (the volume made on
        first use); None for a run that names a network or brings its own /etc/hosts, and
        while the file cannot be made (the run then takes the engine's way)."""
        if spec.network != "none" or any(mount.path == HOSTS_PATH for mount in spec.mounts):
            return None  # (mount paths are normal: `MountPoint.parse`)
        try:
            source = self.prepare()
        except RunnerError as exc:
            log.warning("a run without a network takes the engine's network set-up: %s", exc)
            return None
        return Mount(HOSTS_PATH, source, type="bind", read_only=True)

    def prepare(self) -> str:
        """The hosts file's path on the engine's host, its volume made if it is not yet."""
        with self._lock:
            if self._closed:
                raise RunnerError("the runner is stopping: its hosts file is not made again")
            if self._source is None:
                self._make()
            assert self._source is not None
            return self._source

    def _make(self) -> None:
        """A new volume, under a new name each time (runs can read it in their mountinfo; it
        tells nothing of the runner's lease, and a file made again is a new path)."""
        name = f"oneoff-hosts-{uuid.uuid4().hex}"
        labels = {
            MANAGED: "true",
            ROLE: HOSTS_ROLE,
            INSTANCE: self._instance,
            **self._lease.labels(),
        }
        self._lease.hold()  # nothing of a runner's exists without its lease
        tar = tar_of([("hosts", HOSTS, 0o644)])
        made = self._content.new_volume(name, tar, labels, "the runner's hosts file")
        self._volume, self._source = name, f"{made['Mountpoint']}/hosts"

    def lost(self, used: Mount | None = None) -> bool:
        """Whether the hosts file `used` (by default the current one) is gone: its volume was
        removed (then it is forgotten, to be made again on the next use), or it was already
        made again meanwhile."""
        with self._lock:
            if used is not None and used["Source"] != self._source:
                return True
            if self._volume is None or exists("volume", self._api().inspect_volume, self._volume):
                return False
            self._volume = self._source = None
            return True

    def keep(self) -> None:
        """At every lease renewal: made if it is not yet, made again if it was removed. The
        first time (at startup) before the runner serves; later in a thread of its own, so
        that a renewal never waits on it."""
        if not self._keeping.acquire(blocking=False):
            return  # still at it from the last renewal
        if self._kept:
            threading.Thread(target=self._keep, name="oneoff-hosts", daemon=True).start()
        else:
            self._kept = True
            self._keep()

    def _keep(self) -> None:
        try:
            self.lost()
            self.prepare()
        except RunnerError as exc:
            log.warning("the hosts file of runs without a network could not be made: %s", exc)
        finally:
            self._keeping.release()

    def volume(self) -> str | None:
        """The volume to remove when the runner stops (none is made after this)."""
        with self._lock:
            self._closed = True
            volume, self._volume, self._source = self._volume, None, None
            return volume
