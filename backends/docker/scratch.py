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
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import docker
import requests

from backends.docker.errors import engine_errors
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


KINDS = ("scratch", "files", "unmeasurable")
"""Why the runner stops a run for its disk: past its scratch, past the entry cap, or its layer
could not be measured."""


def why_over(limit: int, max_files: int, size: int | None, entries: int | None) -> str | None:
    """Which of `KINDS` a sample means the run must stop for, or None."""
    if size is None or size < 0 or (entries is not None and entries < 0):
        return "unmeasurable"
    if entries is not None and entries > max_files:
        return "files"
    if size + ENTRY_BYTES * (entries or 0) > limit:
        return "scratch"
    return None


def stopped_for(kind: str, limit: int, max_files: int) -> str:
    """The sentence a result carries for a run the runner stopped for `kind`."""
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

    def watch(
        self, container: str, limit: int, max_files: int, kill: Callable[[str], None]
    ) -> ScratchWatch:
        """Sample `container` in a thread of its own until `ScratchWatch.stop`, or until it is over
        its limit: then `kill(kind)` is called once (`KINDS`)."""
        watch = ScratchWatch()
        thread = threading.Thread(
            target=self._loop,
            args=(watch, container, limit, max_files, kill),
            name="oneoff-scratch",
            daemon=True,
        )
        thread.start()
        return watch

    def _loop(
        self,
        watch: ScratchWatch,
        container: str,
        limit: int,
        max_files: int,
        kill: Callable[[str], None],
    ) -> None:
        delay, refused = 0.0, 0
        while not watch.stopped.wait(delay):
            started = time.monotonic()
            try:
                sample = self._sample(container)
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
            running, size, entries = sample
            if not running:
                return
            reason = why_over(limit, max_files, size, entries)
            if reason is not None:
                if watch.decide(reason):
                    kill(reason)
                return
            delay = max(SAMPLE_SECONDS, ADAPT * (time.monotonic() - started))

    def _sample(self, container: str) -> tuple[bool, int | None, int | None]:
        """(running, SizeRw, entries or None when not counted)."""
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
            if not running or size is None or size < 0 or took < COUNT_AFTER_SECONDS:
                return running, size, None
            return running, size, self._entries(api, container)

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
