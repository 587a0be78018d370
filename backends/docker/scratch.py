"""A run's disk (`scratch`) on Docker: the engine's storage quota where it has one; elsewhere the
runner's own sampling of the run's writable layer, killing the run once it is past its limit.

- `Quota`: whether the engine enforces `storage_opt size` (overlay2 on xfs with `pquota`), asked
  once by creating a never-started container with it; overlay2 on ext4 refuses it (with a 500).
- `Sampler`: one thread per run, at most one sample in flight per run, at most `WALKS` walks of
  writable layers at once per runner. A sample is the engine's `SizeRw` (a walk that counts
  apparent file sizes only) plus `ENTRY_BYTES` per entry, the entries counted from `/changes`
  once a size sample takes `COUNT_AFTER_SECONDS` (about 4k entries): empty files and
  directories cost blocks `SizeRw` does not see. Every `SAMPLE_SECONDS`, or ten times as long
  as the last sample took (so one run's sampling costs the engine at most a tenth of a core).

What sampling cannot see (files deleted while open, `fallocate` spread over many files below
the per-file bound) and how far past its limit a fast writer gets are in docs/security.md.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from typing import Any

import docker
import requests

from backends.docker.errors import engine_errors
from backends.docker.returned import engine_archive
from backends.labels import CREATED_BY, VOLUME_API
from runner import archive_streams, archives
from runner.errors import BackendUnavailable, NotFound, RunnerError

log = logging.getLogger("oneoff_runner.docker")

SAMPLE_SECONDS = 0.25
ADAPT = 10
"""The next sample waits at least this many times as long as the last one took."""
ENTRY_BYTES = 4352
"""What one entry (an inode and its directory entry) costs the disk beyond its apparent size."""
COUNT_AFTER_SECONDS = 0.010
WALKS = 2
UNMEASURABLE_AFTER = 3
"""Samples in a row the engine answers with an error before the run counts as unmeasurable."""
MiB = 1024 * 1024
PATH_KEY = b'"Path":'
"""One per entry in `/changes`; never inside a JSON string, where every quote is escaped."""


class Quota:
    """Whether the engine enforces a storage quota per container, asked once, on first use."""

    def __init__(self, probe: Callable[[], bool]) -> None:
        self._probe = probe
        self._lock = threading.Lock()
        self._known: bool | None = None

    def __call__(self) -> bool:
        with self._lock:
            if self._known is None:
                self._known = self._probe()
                how = "its storage quota" if self._known else "sampling (no storage quota)"
                log.info("scratch limits on this engine are held by %s", how)
            return self._known


KINDS = ("scratch", "files", "unmeasurable", "volume")
"""Why the runner stops a run for its disk: past its scratch, past the entry cap, its layer
could not be measured, or a named volume it writes is past RUNNER_MAX_VOLUME_BYTES."""


def why_over(limit: int, max_files: int, size: int | None, entries: int | None) -> str | None:
    """Which of `KINDS` a sample means the run must stop for, or None."""
    if size is None or size < 0 or (entries is not None and entries < 0):
        return "unmeasurable"
    if entries is not None and entries > max_files:
        return "files"
    if size + ENTRY_BYTES * (entries or 0) > limit:
        return "scratch"
    return None


def stopped_for(kind: str, limit: int, max_files: int, volume_limit: int = 0) -> str:
    """The sentence a result carries for a run the runner stopped for `kind`."""
    if kind == "volume":
        return (
            "the runner stopped the run: a named volume it mounts grew past its bound of "
            f"{_size(volume_limit)} (RUNNER_MAX_VOLUME_BYTES); remove files from it (a short run "
            "with rm) or write less"
        )
    if kind == "files":
        return (
            f"the runner stopped the run: it made more than {max_files} files and directories "
            "(RUNNER_MAX_SCRATCH_FILES); make fewer"
        )
    if kind == "unmeasurable":
        return (
            "the runner stopped the run: its disk use could not be measured (the engine could "
            "not walk its files, e.g. a directory tree deeper than the host's path limit)"
        )
    return (
        f"the runner stopped the run: it wrote past its scratch limit of {_size(limit)}; ask "
        "for more with `scratch` (at most RUNNER_MAX_SCRATCH_BYTES) or write less"
    )


def _size(count: int) -> str:
    return f"{count / MiB:.1f} MiB"


def tree_use(
    api: docker.APIClient,
    container: str,
    path: str,
    stop_above: int,
    seen: Callable[[tarfile.TarInfo], None] | None = None,
) -> int:
    """What the tree at `path` in the container uses, as the disk bounds count it (apparent
    bytes and `ENTRY_BYTES` per entry), read from the engine's archive of it, each member
    shown to `seen`; reading stops once past `stop_above`."""
    entries = size = 0
    with engine_archive(api, container, path) as chunks:
        reader = archive_streams.ChunkReader(chunks, sys.maxsize, "path")
        with tarfile.open(fileobj=reader, mode="r|") as archive:
            for member in archives.members(archive):
                entries, size = entries + 1, size + (member.size if member.isfile() else 0)
                if seen is not None:
                    seen(member)
                if size + ENTRY_BYTES * entries > stop_above:
                    break
    return size + ENTRY_BYTES * entries


class ScratchWatch:
    """The sampling of one run: `reason`, one of `KINDS`, is set (before the kill) when the
    runner stops it."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.stopped = threading.Event()
        self._lock = threading.Lock()

    def stop(self) -> str | None:
        """Stop sampling; why the run was stopped, if it was. No sample decides after this."""
        with self._lock:
            self.stopped.set()
            return self.reason

    def decide(self, reason: str) -> bool:
        """Keep `reason`, unless sampling has stopped: whether the run is to be killed."""
        with self._lock:
            if self.stopped.is_set():
                return False
            self.reason = reason
            return True


class Sampler:
    def __init__(self, api: Callable[[], docker.APIClient]) -> None:
        self._api = api
        self._walks = threading.BoundedSemaphore(WALKS)
        self._lock = threading.Lock()
        self._live: dict[threading.Thread, ScratchWatch] = {}
        self._closed = False

    def close(self, seconds: float) -> None:
        """Stop every sampling, and start none after, and wait up to `seconds` for samples in
        flight: they hold the engine's client, which is closed next."""
        with self._lock:
            self._closed = True
            live = dict(self._live)
        for watch in live.values():
            watch.stop()
        deadline = time.monotonic() + seconds
        for thread in live:
            thread.join(max(deadline - time.monotonic(), 0))

    def watch(
        self,
        container: str,
        limit: int,
        max_files: int,
        kill: Callable[[str], None],
        volume_limit: int = sys.maxsize,
    ) -> ScratchWatch:
        """Sample `container` in a thread of its own until `ScratchWatch.stop`, or until it is over
        its limit, or a caller's named volume it mounts writable is over `volume_limit`: then
        `kill(kind)` is called once (`KINDS`). Without a layer `limit` (sys.maxsize: the
        engine's quota holds it), a run that mounts no such volume is not sampled."""
        watch = ScratchWatch()
        thread = threading.Thread(
            target=self._sampling,
            args=(
                functools.partial(
                    self._loop, watch, container, (limit, max_files, volume_limit), kill
                ),
            ),
            name="oneoff-scratch",
            daemon=True,
        )
        with self._lock:
            if self._closed:
                watch.stop()
                return watch
            self._live[thread] = watch
            thread.start()
        return watch

    def _sampling(self, loop: Callable[[], None]) -> None:
        """One run's sampling `loop`, forgotten by `close` once it ends."""
        try:
            loop()
        finally:
            with self._lock:
                self._live.pop(threading.current_thread(), None)

    def _loop(
        self,
        watch: ScratchWatch,
        container: str,
        limits: tuple[int, int, int],
        kill: Callable[[str], None],
    ) -> None:
        limit, max_files, volume_limit = limits
        delay, refused = 0.0, 0
        volumes: list[str] | None = None
        while not watch.stopped.wait(delay):
            started = time.monotonic()
            try:
                running, size, entries, mounts = self._sample(container)
                if running and volumes is None:
                    volumes = self._bounded(mounts)
                    if not volumes and limit == sys.maxsize:
                        return  # the engine's quota holds the layer, and no volume to sample
                over = running and self._volume_over(container, volumes or [], volume_limit)
            except NotFound:
                return  # gone: the run is over
            except RunnerError as exc:
                log.warning("scratch sample of %s failed (retried): %s", container[:12], exc)
                # The engine answering, yet failing each time, cannot measure the layer (the
                # containerd image store's walk of a tree deeper than PATH_MAX is a 500).
                refused = 0 if isinstance(exc, BackendUnavailable) else refused + 1
                if refused >= UNMEASURABLE_AFTER:
                    if watch.decide("unmeasurable"):
                        kill("unmeasurable")
                    return
                delay = SAMPLE_SECONDS
                continue
            refused = 0
            if not running:
                return
            reason = "volume" if over else why_over(limit, max_files, size, entries)
            if reason is not None:
                if watch.decide(reason):
                    kill(reason)
                return
            delay = max(SAMPLE_SECONDS, ADAPT * (time.monotonic() - started))

    def _bounded(self, mounts: list[dict[str, Any]]) -> list[str]:
        """Where the run mounts, writable, named volumes callers made (POST /volume)."""
        api = self._api()
        found = []
        for mount in mounts:
            if mount.get("Type") != "volume" or not mount.get("RW"):
                continue
            with engine_errors("looking at the run's volumes"):
                labels = api.inspect_volume(mount["Name"]).get("Labels") or {}
            if labels.get(CREATED_BY) == VOLUME_API:
                found.append(str(mount["Destination"]))
        return found

    def _volume_over(self, container: str, paths: list[str], limit: int) -> bool:
        """Whether a volume at one of `paths` in the container holds more than `limit`."""
        for path in paths:
            with self._walks, engine_errors("measuring the run's volumes"):
                if tree_use(self._api(), container, path, limit) > limit:
                    return True
        return False

    def _sample(self, container: str) -> tuple[bool, int | None, int | None, list[Any]]:
        """(running, SizeRw, entries or None when not counted, its mounts)."""
        api = self._api()
        with self._walks:
            started = time.monotonic()
            with engine_errors("measuring the run's disk"):
                response = api.get(_url(api, container, "json"), params={"size": 1})
                raise_for_status(response)
                inspected: dict[str, Any] = response.json()
            took = time.monotonic() - started
            running = bool(inspected["State"].get("Running"))
            size = inspected.get("SizeRw")
            mounts = inspected.get("Mounts") or []
            if not running or size is None or size < 0 or took < COUNT_AFTER_SECONDS:
                return running, size, None, mounts
            return running, size, self._entries(api, container), mounts

    @staticmethod
    def _entries(api: docker.APIClient, container: str) -> int:
        """Entries in the writable layer, counted as the engine's answer streams; -1 when the
        engine cannot list them (a tree too deep to walk): then the run is unmeasurable."""
        with engine_errors("counting the run's files"):
            response = api.get(_url(api, container, "changes"), stream=True)
        with contextlib.closing(response), engine_errors("counting the run's files"):
            if response.status_code == 404:
                raise NotFound("the container is gone")
            if response.status_code != 200:
                return -1
            count, tail = 0, b""
            for chunk in response.iter_content(64 * 1024):
                window = tail + chunk
                count += window.count(PATH_KEY)
                tail = window[-(len(PATH_KEY) - 1) :]  # too short to hold a key counted already
        return count


def _url(api: docker.APIClient, container: str, what: str) -> str:
    return f"{api.base_url}/v{api.api_version}/containers/{container}/{what}"


def raise_for_status(response: requests.Response) -> None:
    try:
        response.raise_for_status()
    except requests.exceptions.HTTPError as exc:
        raise docker.errors.create_api_error_from_http_exception(exc) from exc
