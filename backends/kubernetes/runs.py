"""Async runs on Kubernetes: Jobs that outlive the request that started them, and the runner.

The Job carries what a later question needs: its labels the run id, role and hashed
idempotency key; its annotations the creation time, timeout and what to collect; its pod's
state the rest (phase, exit code, OOM, times); its pod's log the output. The Job's
`ttlSecondsAfterFinished` is the result's TTL, so the cluster removes a finished run itself. A
run that ends without a Job (cancelled, or failed to start) leaves a record: a ConfigMap without
data whose annotation holds its state, reaped after the TTL (a ConfigMap, so the runner needs
no permission to list Secrets, which would let it read every Secret in the namespace).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import urllib3

from backends.kubernetes.errors import ApiUnreachable, api_errors
from backends.kubernetes.jobs import Jobs
from backends.kubernetes.manifests import RUN_CONTAINER, job_name
from backends.kubernetes.pods import LOG_CHUNK_BYTES
from backends.kubernetes.watching import job_deadline_exceeded
from backends.labels import (
    ASYNC_ROLE,
    CREATED,
    DELIVERED,
    EVICTABLE,
    KEY,
    OUTPUT,
    RECORD,
    RECORD_ROLE,
    ROLE,
    RUN_ID,
    TENANT,
    TIMEOUT_AT,
    key_label,
    readable,
    run_labels,
    selector,
)
from backends.records import (
    collect_label,
    finished_state,
    latest_per_run,
    record_label,
    record_labels,
    stored_collect,
    stored_record,
)
from runner.errors import Cancelled, Conflict, NotFound, RunnerError
from runner.spec import Outcome, RunControl, RunRecord, RunSpec


class PodLogStream:
    """A pod's log, from its first byte: ("stdout", bytes) pairs (the log merges both
    streams); with `follow`, until the container ends. `stop` ends it from another thread."""

    def __init__(self, response: Any) -> None:
        self._response = response

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        try:
            for chunk in self._response.stream(LOG_CHUNK_BYTES, decode_content=False):
                if chunk:
                    yield "stdout", chunk
        except (urllib3.exceptions.HTTPError, OSError, ValueError):
            return  # stopped under us: the caller stopped listening
        finally:
            self._response.release_conn()

    def stop(self) -> None:
        # RuntimeError: the stream has already ended and given its connection back
        with contextlib.suppress(OSError, RuntimeError):
            self._response.shutdown()


class JobRuns:
    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs
        self.settings = jobs.settings
        self.namespace = jobs.namespace

    def launch(self, spec: RunSpec, control: RunControl, idempotency_key: str | None) -> None:
        now = time.time()
        ttl = int(self.settings.result_ttl_seconds)
        lasts = spec.timeout_seconds + ttl
        kept = run_labels(spec.run_id, self.settings.instance_id, ASYNC_ROLE, spec.tenant, lasts)
        if idempotency_key is not None:
            kept[KEY] = key_label(idempotency_key)
        if spec.evictable:
            kept[EVICTABLE] = "true"
        annotations = {
            CREATED: repr(spec.accepted_at or now),
            TIMEOUT_AT: repr(now + spec.timeout_seconds),
            OUTPUT: collect_label(spec.collecting),
        }
        name = job_name(spec.run_id)
        try:
            self.jobs.create_job(spec, control, self.jobs.meta(name, kept, annotations), ttl)
        except BaseException:
            self.jobs.delete(name)
            raise

    def wait(self, run_id: str) -> None:
        """Until the pod ends; a pod that cannot start (image, config) ends the run as failed."""
        found = self._job(run_id)
        if found is None:
            return
        try:
            self._wait_pod(found)
        except (Cancelled, ApiUnreachable):
            return  # cancelled: recorded by whoever cancelled; unreachable: the run goes on
        except RunnerError as exc:
            record = self._record_of(found)
            record.state, record.error, record.finished_at = "failed", exc.message, time.time()
            self.discard(run_id, record)

    def find(
        self, tenant: str | None, run_id: str | None, idempotency_key: str | None
    ) -> list[RunRecord]:
        terms = selector(tenant, run_id, idempotency_key)
        with api_errors("listing runs"):
            jobs = self.jobs.api.batch.list_namespaced_job(
                self.namespace, label_selector=",".join([*terms, f"{ROLE}={ASYNC_ROLE}"])
            )
            records = [self._readable(item) for item in jobs.items]
            if idempotency_key is None:
                kept = self.jobs.api.core.list_namespaced_config_map(
                    self.namespace,
                    label_selector=",".join([*terms, f"{ROLE}={RECORD_ROLE}"]),
                )
                for item in kept.items:
                    annotations, labels = (
                        item.metadata.annotations or {},
                        item.metadata.labels or {},
                    )
                    record = stored_record(annotations.get(RECORD), labels)
                    if record is not None:
                        record.delivered = labels.get(DELIVERED) == "true"
                    records.append(record)
        return latest_per_run([record for record in records if record is not None])

    def _readable(self, found: Any) -> RunRecord | None:
        return readable(f"Job {found.metadata.name}", lambda: self._record_of(found))

    def output(self, run_id: str, *, follow: bool) -> PodLogStream:
        """The pod log of the run's container; NotFound while it has none: no pod, or a
        container that has not run (the kubelet serves no log of a waiting one)."""
        pod = self._started_pod(run_id) if follow else self._pod(run_id)
        if pod is None:
            raise NotFound(f"run {run_id!r} has no pod yet, or no more", field="run_id")
        if _run_state(pod, "running") is None and _run_state(pod, "terminated") is None:
            raise NotFound(f"run {run_id!r}: its container has not run", field="run_id")
        with api_errors("reading the run's log"):
            response = self.jobs.api.core.read_namespaced_pod_log(
                pod.metadata.name,
                self.namespace,
                container=RUN_CONTAINER,
                follow=follow,
                _preload_content=False,
            )
        return PodLogStream(response)

    def collect(self, run_id: str) -> Outcome:
        found = self._job(run_id)
        if found is None:
            raise NotFound(
                f"run {run_id!r}: its Job is gone (expired or cancelled)", field="run_id"
            )
        record = self._record_of(found)
        collect = stored_collect((found.metadata.annotations or {})[OUTPUT])
        return self.jobs.pods.collect(collect, self._pod(run_id), record.timed_out)

    def discard(self, run_id: str, record: RunRecord | None = None) -> None:
        """Delete the run's Job (which stops it), after keeping `record`: the record comes
        first (it outranks the Job), so the run never looks gone meanwhile."""
        if record is not None:
            self.record(record)
        self.jobs.delete(job_name(run_id))

    def forget(self, run_id: str) -> None:
        """Delete a finished run's record, then its Job (with its pod and log)."""
        self.jobs.delete_config_map(f"{job_name(run_id)}-record")
        self.jobs.delete(job_name(run_id))

    def mark_delivered(self, run_id: str) -> None:
        """A label on the run's Job and on its record, whichever it has (a record's labels are
        read with it)."""
        body = {"metadata": {"labels": {DELIVERED: "true"}}}
        name = job_name(run_id)
        doing = "marking the run's result delivered"
        with contextlib.suppress(NotFound), api_errors(doing):
            self.jobs.api.batch.patch_namespaced_job(name, self.namespace, body)
        with contextlib.suppress(NotFound), api_errors(doing):
            self.jobs.api.core.patch_namespaced_config_map(f"{name}-record", self.namespace, body)

    def record(self, record: RunRecord) -> None:
        """A ConfigMap without data, whose annotation keeps the run's end for the TTL. The
        first end kept counts (as on Docker): a record already there is left as it is."""
        kept = record_labels(record, self.settings.instance_id, self.settings.result_ttl_seconds)
        name = f"{job_name(record.run_id)}-record"
        config_map = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": self.jobs.meta(name, kept, {RECORD: record_label(record)}),
        }
        try:
            with api_errors("recording the run's end"):
                self.jobs.api.core.create_namespaced_config_map(self.namespace, config_map)
        except Conflict:
            pass  # recorded already (by whoever ended the run first)

    def _job(self, run_id: str) -> Any:
        try:
            with api_errors("reading the run's Job"):
                return self.jobs.api.batch.read_namespaced_job(job_name(run_id), self.namespace)
        except NotFound:
            return None

    def _pod(self, run_id: str) -> Any:
        with api_errors("finding the run's pod"):
            found = self.jobs.api.core.list_namespaced_pod(
                self.namespace, label_selector=f"{RUN_ID}={run_id}"
            )
        return found.items[0] if found.items else None

    def _started_pod(self, run_id: str) -> Any:
        """The pod once its container has started (a waiting container has no log yet)."""
        found = self._job(run_id)
        if found is None:
            return None
        with contextlib.suppress(RunnerError):
            self._wait_pod(found, until_started=True)
        return self._pod(run_id)

    def _wait_pod(self, found: Any, *, until_started: bool = False) -> tuple[Any, bool]:
        """Follow the pod of the Job `found`, with the image and timeout the Job keeps."""
        annotations = found.metadata.annotations or {}
        run_id = found.metadata.labels[RUN_ID]
        image = found.spec.template.spec.containers[0].image
        timeout = float(annotations[TIMEOUT_AT]) - float(annotations[CREATED])
        control = RunControl()
        return self.jobs.pods.wait(run_id, image, timeout, control, until_started=until_started)

    def _record_of(self, found: Any) -> RunRecord:
        annotations = found.metadata.annotations or {}
        run_id = found.metadata.labels[RUN_ID]
        record = RunRecord(
            run_id=run_id,
            state="pulling",
            image=found.spec.template.spec.containers[0].image,
            created_at=float(annotations[CREATED]),
            tenant=found.metadata.labels.get(TENANT, ""),
            evictable=found.metadata.labels.get(EVICTABLE) == "true",
            delivered=found.metadata.labels.get(DELIVERED) == "true",
        )
        pod = self._pod(run_id)
        terminated = _run_state(pod, "terminated")
        running = _run_state(pod, "running")
        begun = running or terminated  # exited, the pod may still collect its paths
        if begun is not None:
            record.state, record.started_at = "running", _seconds(begun.started_at)
        # finished once the whole pod has: its collect sidecar writes after the run's container
        collected = pod is None or pod.status.phase in ("Succeeded", "Failed")
        if (terminated is not None and collected) or _deadline(found, pod):
            record.exit_code = terminated.exit_code if terminated else None
            record.oom_killed = bool(terminated and terminated.reason == "OOMKilled")
            record.timed_out = _deadline(found, pod)
            if terminated is not None:
                record.started_at = _seconds(terminated.started_at)
                record.finished_at = _seconds(terminated.finished_at)
            record.state = finished_state(record)
        return record


def _run_state(pod: Any, which: str) -> Any:
    if pod is None:
        return None
    for status in pod.status.container_statuses or []:
        if status.name == RUN_CONTAINER and status.state is not None:
            return getattr(status.state, which)
    return None


def _deadline(found: Any, pod: Any) -> bool:
    """Killed at the pod's deadline (the kubelet says so on the pod), or at the Job's."""
    if pod is not None and pod.status.reason == "DeadlineExceeded":
        return True
    return job_deadline_exceeded(found)


def _seconds(moment: datetime | str | None) -> float | None:
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return moment.timestamp()
