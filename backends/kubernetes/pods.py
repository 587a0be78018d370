"""A run's pod, from start to result: followed until it ends (its clock started when its
container starts), then read (the run's log, the returned paths). Used by `KubernetesBackend`
for plain and async runs alike."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from datetime import UTC, datetime
from typing import Any

from backends.kubernetes.api import ClusterApi
from backends.kubernetes.errors import ApiUnreachable, PullJudge, api_errors, still_refused
from backends.kubernetes.manifests import (
    COLLECT_CONTAINER,
    RUN_CONTAINER,
    UNPACK_CONTAINER,
    job_name,
    start_grace,
)
from backends.kubernetes.returned import log_bytes_for, read_returned, return_limit
from backends.kubernetes.watching import PodWatch, job_deadline_exceeded
from runner.errors import BackendUnavailable, Cancelled, InvalidRequest, NotFound
from runner.spec import CollectSpec, Outcome, RunControl

log = logging.getLogger(__name__)

END_GRACE_SECONDS = 60  # past the timeout: the kubelet's kill, the helpers' collect
WARM_GONE_SECONDS = 10  # a warm pod not seen by then was deleted (a cancel) or lost
KILLED = 137
LOG_CHUNK_BYTES = 64 * 1024


class RunPods:
    def __init__(self, api: ClusterApi) -> None:
        self.api = api

    def wait(
        self,
        run_id: str,
        image: str,
        timeout: float,
        control: RunControl,
        *,
        until_started: bool = False,
        command_started: datetime | None = None,
    ) -> tuple[Any, bool]:
        """Follow the pod of run `run_id` (of `image`) until it ends; returns (pod, timed out).

        The run's clock starts when its container starts, as on Docker: scheduling and image
        pulls get `RUNNER_KUBE_START_TIMEOUT_SECONDS` of their own. Once the container runs,
        the pod's `activeDeadlineSeconds` is lowered so that the kubelet kills it `timeout`
        seconds after that start; the pod stays, with its log, `Failed` for `DeadlineExceeded`.
        `command_started`: when the command started, if later than its container (a warm
        pod's, whose deadline its take set). A warm pod's run has ended when its one container
        has (the kubelet reports that a status update before the pod's phase), unless it was
        killed: whether by its deadline, the pod's phase then says.
        """
        warm = command_started is not None
        pods = PodWatch(self.api.core, self.api.namespace, run_id, job_name(run_id), warm=warm)
        pods.give_up = time.monotonic() + (
            WARM_GONE_SECONDS if warm else start_grace(self.api.settings)
        )
        judge = PullJudge(image, self.api.settings.kube_helper_image)
        started, last = False, None
        with contextlib.closing(pods.follow()) as events:
            for kind, pod in events:
                last = pod
                if self._ended(control, kind, pod, judge) or (warm and _exited(pod)):
                    return pod, self._deadline_exceeded(run_id, pod, has_job=not warm)
                begun = None if started else command_started or _run_started_at(pod)
                if begun is not None:
                    started = True
                    control.emit("phase", "running")
                    self._start_clock(timeout, pod, begun)
                    left = begun.timestamp() + timeout - time.time()
                    pods.give_up = time.monotonic() + left + END_GRACE_SECONDS
                    if until_started:
                        return pod, False
        if control.cancelled.is_set():
            raise Cancelled("the run was cancelled")  # its pod went before it was seen
        if warm and last is None and not pods.failures:
            raise BackendUnavailable(
                "the run's warm pod was deleted before its end was seen; run it again"
            )
        return self._gave_up(pods, started, last)

    def _gave_up(self, pods: PodWatch, started: bool, last: Any) -> tuple[Any, bool]:
        """The watch ended before the pod did: the API server was lost, the run's timeout
        passed (the run timed out), or its start timeout did (why it never started)."""
        grace = start_grace(self.api.settings)
        if pods.failures:
            raise ApiUnreachable(
                "lost the Kubernetes API server while watching the run's pod; the run may still "
                "be going (async runs keep it)"
            )
        if started:
            return last, True
        if last is None and pods.refusal is not None:
            raise still_refused(pods.refusal, grace)
        raise BackendUnavailable(
            f"the run's pod did not start within {grace} s (RUNNER_KUBE_START_TIMEOUT_SECONDS; "
            f"{_why_pending(last)}); the cluster may lack capacity for its requests"
        )

    def _start_clock(self, timeout: float, pod: Any, begun: datetime) -> None:
        """The pod's deadline, from its container's start (the kubelet counts from the pod's
        `startTime`, which is earlier by the image pull)."""
        offset = max(0.0, (begun - pod.status.start_time).total_seconds())
        deadline = math.ceil(offset) + max(1, math.ceil(timeout))
        current = pod.spec.active_deadline_seconds
        if current is not None and deadline >= current:
            return
        body = {"spec": {"activeDeadlineSeconds": deadline}}
        try:
            with contextlib.suppress(NotFound), api_errors("starting the run's clock"):
                self.api.core.patch_namespaced_pod(pod.metadata.name, self.api.namespace, body)
        except ApiUnreachable as exc:
            # An API server restarting as the run starts: the run goes on. The runner's own
            # clock (the watch's give_up) still ends it on time; only if the runner goes too
            # does it run on to the pod's first deadline, later by the start grace.
            log.warning("the run's pod keeps its first deadline: %s", exc)

    def _ended(self, control: RunControl, kind: str, pod: Any, judge: PullJudge) -> bool:
        if kind == "DELETED" or pod.metadata.deletion_timestamp is not None:
            if control.cancelled.is_set():
                raise Cancelled("the run was cancelled")
            return True
        if pod.status.phase in ("Succeeded", "Failed"):
            return True
        for status in _all_statuses(pod):
            waiting = status.state.waiting if status.state else None
            if waiting is not None:
                refused = judge.judge(status.name, waiting.reason or "", waiting.message or "")
                if refused is not None:
                    raise refused
        return False

    def _deadline_exceeded(self, run_id: str, pod: Any, *, has_job: bool) -> bool:
        """The kubelet marks a pod killed at its own deadline; the Job controller, at the Job's
        (the backstop), deletes the pod and writes FailureTarget/Failed conditions. A warm pod
        has no Job."""
        if pod is not None and pod.status.reason == "DeadlineExceeded":
            return True
        if not has_job:
            return False
        try:
            with api_errors("reading the Job"):
                found = self.api.batch.read_namespaced_job(job_name(run_id), self.api.namespace)
        except NotFound:
            return False
        return job_deadline_exceeded(found)

    def collect(
        self, collect: CollectSpec, pod: Any, timed_out: bool, marker: bytes = b""
    ) -> Outcome:
        """The run's result from its ended pod; `marker`: a line a warm pod's shell printed
        before the command, taken out of the log."""
        _require_unpacked(pod)
        terminated = _terminated(pod)
        cap = collect.max_output_bytes
        ran = pod is not None and _run_started_at(pod) is not None  # else it has no log
        log, cut = self._log(pod, RUN_CONTAINER, cap, marker) if ran else (b"", False)
        return Outcome(
            exit_code=terminated.exit_code if terminated else None,
            stdout=log,
            stderr=b"",
            stdout_truncated=cut,
            stderr_truncated=False,
            timed_out=timed_out,
            oom_killed=bool(terminated and terminated.reason == "OOMKilled"),
            returned=self._returned(collect, pod),
            streams_merged=True,
        )

    def _log(self, pod: Any, container: str, limit: int, marker: bytes) -> tuple[bytes, bool]:
        """The log up to `limit` bytes, and whether it had more. `marker` is taken out once,
        wherever it is: the stdout and stderr lines a pod's log merges come in either order."""
        with api_errors(f"reading the {container} container's log"):
            response = self.api.core.read_namespaced_pod_log(
                pod.metadata.name,
                self.api.namespace,
                container=container,
                limit_bytes=limit + len(marker) + 1,
                _preload_content=False,
            )
            data = bytes(response.data)
        if marker:
            data = data.replace(marker, b"", 1)
        return data[:limit], len(data) > limit

    def _returned(self, collect: CollectSpec, pod: Any) -> dict[str, tuple[str, bytes]]:
        """The collect sidecar's log, read as it streams (`returned`)."""
        if pod is None or not collect.returned:
            return {}
        limit = return_limit(self.api.settings, collect.max_response_bytes)
        with api_errors("reading the returned paths"):
            response = self.api.core.read_namespaced_pod_log(
                pod.metadata.name,
                self.api.namespace,
                container=COLLECT_CONTAINER,
                limit_bytes=log_bytes_for(limit.size),
                _preload_content=False,
            )
            try:
                return read_returned(response.stream(LOG_CHUNK_BYTES), limit)
            finally:
                response.release_conn()


def _run_started_at(pod: Any) -> datetime | None:
    """When the run's container started: it runs, or already ran."""
    for status in pod.status.container_statuses or []:
        state = status.state
        begun = state and (state.running or state.terminated)
        if status.name == RUN_CONTAINER and begun:
            return begun.started_at or datetime.now(UTC)
    return None


def _why_pending(pod: Any) -> str:
    """What keeps a pod from starting, in the scheduler's or the kubelet's words."""
    if pod is None:
        return "no pod was made"
    for condition in pod.status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return f"not scheduled: {condition.reason}: {condition.message}"
    for status in _all_statuses(pod):
        if status.state and status.state.waiting:
            return f"{status.name}: {status.state.waiting.reason}: {status.state.waiting.message}"
    return f"pod phase {pod.status.phase}"


def _require_unpacked(pod: Any) -> None:
    """The unpack init container failed (the content outgrew the scratch space, say): the
    run never started, and its message (FallbackToLogsOnError) says why."""
    for status in (pod.status.init_container_statuses or []) if pod is not None else []:
        ended = status.state.terminated if status.state else None
        if status.name == UNPACK_CONTAINER and ended is not None and ended.exit_code:
            raise InvalidRequest(
                f"volumes: the content could not be unpacked in the pod ({ended.message}); "
                "send less, or raise RUNNER_KUBE_SCRATCH_SIZE",
                field="volumes",
            )


def _all_statuses(pod: Any) -> list[Any]:
    status = pod.status
    return [*(status.init_container_statuses or []), *(status.container_statuses or [])]


def _exited(pod: Any) -> bool:
    """The run's container ended on its own (not killed: the kubelet's deadline kills, and
    says so in the pod's phase, which comes a status update later)."""
    ended = _terminated(pod)
    return ended is not None and ended.exit_code != KILLED


def _terminated(pod: Any) -> Any:
    if pod is None:
        return None
    for status in pod.status.container_statuses or []:
        if status.name == RUN_CONTAINER and status.state and status.state.terminated:
            return status.state.terminated
    return None
