"""Following one run's pod through API-server blips, and noticing a pod that is never made.

A watch starts from a list's resourceVersion and moves on with every event and BOOKMARK; when
it ends (its own timeout, a dropped connection) it resumes from there, and when the server has
forgotten that version (410 Gone) it lists again. A transport error, a 429 or a 5xx is retried
with backoff until the caller's deadline: a blip never ends a run.

A pod that admission refuses (Pod Security, a ResourceQuota, a missing service account) is
never created: the Job controller records a `FailedCreate` Warning event on the Job, and that
event is the only place the refusal shows. While no pod exists the watch therefore runs in
short windows, and after each one the Job's newest `FailedCreate` event is read. A refusal that
never clears (Pod Security, an invalid pod) fails the run within seconds with the admission's
own words; one that may (a quota, a service account not there yet) is waited on, since the Job
controller retries with backoff, until the run's start timeout: `refusal` then says why.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from backends.kubernetes.errors import api_errors, never_created
from backends.labels import POOL, RUN_ID
from runner.errors import RunnerError

log = logging.getLogger(__name__)

NO_POD_WINDOW_SECONDS = 2
WATCH_WINDOW_SECONDS = 240
READ_SLACK_SECONDS = 30
CONNECT_TIMEOUT_SECONDS = 10
MAX_BACKOFF_SECONDS = 5.0
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, OSError, ValueError)


class PodWatch:
    """The run's pod, event by event: `follow()` yields (type, pod) until `give_up` (a
    `time.monotonic()` moment the caller may move) passes or the caller stops."""

    def __init__(self, core: Any, namespace: str, run_id: str, job: str, *, warm: bool) -> None:
        """`warm`: the run's pod is a warm pod (`backends.kubernetes.warm`), else its Job's.
        Either way only that one: a warm pod a take gave up on may still carry the run id."""
        self.core, self.namespace, self.job = core, namespace, job
        self.selector = f"{RUN_ID}={run_id},{'' if warm else '!'}{POOL}"
        self.give_up = time.monotonic()
        self.version: str | None = None
        self.seen_pod = False
        self.failures = 0
        self.refusal: str | None = None  # the newest FailedCreate that may still clear
        self.stopped = threading.Event()

    def follow(self) -> Generator[tuple[str, Any], None, None]:
        while time.monotonic() < self.give_up:
            try:
                if self.version is None:
                    yield from self._list()
                yield from self._watch()
                self.failures = 0
            except ApiException as exc:
                if exc.status == 410:
                    self.version = None  # the server forgot our place: start from a list
                    continue
                if exc.status not in RETRIED_STATUSES:
                    with api_errors("watching the run's pod"):
                        raise
                self._back_off(exc)
            except TRANSPORT_ERRORS as exc:
                self._back_off(exc)
            if not self.seen_pod:
                self._refused()

    def _list(self) -> Iterator[tuple[str, Any]]:
        found = self.core.list_namespaced_pod(
            self.namespace, label_selector=self.selector, _request_timeout=self._timeouts(0)
        )
        self.version = found.metadata.resource_version
        for pod in found.items:
            self.seen_pod = True
            yield "ADDED", pod

    def _watch(self) -> Iterator[tuple[str, Any]]:
        window = WATCH_WINDOW_SECONDS if self.seen_pod else NO_POD_WINDOW_SECONDS
        window = max(1, min(window, int(self.give_up - time.monotonic()) + 1))
        watcher = watch.Watch()
        stream = watcher.stream(
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=self.selector,
            resource_version=self.version,
            allow_watch_bookmarks=True,
            timeout_seconds=window,
            _request_timeout=self._timeouts(window),
        )
        # closing the generator releases its connection, also when the caller leaves early
        with contextlib.closing(stream):
            for event in stream:
                self.version = watcher.resource_version or self.version
                if event["type"] == "BOOKMARK":
                    continue
                self.seen_pod = True
                yield event["type"], event["object"]

    @staticmethod
    def _timeouts(window: int) -> tuple[int, int]:
        """Connect, and read: a silent connection (a dead peer) is noticed, not waited on."""
        return CONNECT_TIMEOUT_SECONDS, window + READ_SLACK_SECONDS

    def _back_off(self, exc: BaseException) -> None:
        self.failures += 1
        pause = min(MAX_BACKOFF_SECONDS, 0.1 * 2**self.failures)
        log.warning("watching the run's pod: %s; again in %.1f s", type(exc).__name__, pause)
        self.stopped.wait(min(pause, max(0.0, self.give_up - time.monotonic())))

    def _refused(self) -> None:
        """The Job controller's newest FailedCreate event: an error when it never clears."""
        fields = f"involvedObject.kind=Job,involvedObject.name={self.job},reason=FailedCreate"
        try:
            with api_errors("reading the Job's events"):
                found = self.core.list_namespaced_event(
                    self.namespace, field_selector=fields, _request_timeout=self._timeouts(0)
                )
        except RunnerError:
            return  # a blip: asked again after the next window
        if found.items:
            self.refusal = max(found.items, key=_last_seen).message or ""
            refused = never_created(self.refusal)
            if refused is not None:
                raise refused


def _last_seen(event: Any) -> datetime:
    """Events repeat (`count`, `lastTimestamp`) and are listed in no set order."""
    when = event.last_timestamp or event.event_time or event.metadata.creation_timestamp
    return when or datetime.min.replace(tzinfo=UTC)


def job_deadline_exceeded(found: Any) -> bool:
    """The Job controller's conditions: FailureTarget, then Failed, reason DeadlineExceeded."""
    conditions = (found.status.conditions if found.status else None) or []
    return any(
        condition.type in ("FailureTarget", "Failed")
        and condition.status == "True"
        and condition.reason == "DeadlineExceeded"
        for condition in conditions
    )
