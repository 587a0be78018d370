"""What runs behind the fake API server: the Job controller, Pod Security admission, the
kubelet and the garbage collector, as the real ones behave where the runner can tell.

- Job controller: makes the pod only once the Job is not suspended; when admission refuses the
  pod, records a `FailedCreate` Warning event on the Job (and no pod) and tries again after a
  backoff that doubles (the real one: 1 s to 1 min; here `API_BACKOFF_SECONDS` to 32 times
  that), so a refusal that clears (a quota freed) lets the pod in later; writes the Job's
  conditions as the real controller does (`SuccessCriteriaMet`/`Complete`,
  `FailureTarget`/`Failed` with reason `BackoffLimitExceeded` or `DeadlineExceeded`); at the
  Job's `activeDeadlineSeconds` (from its start) it deletes the pod, whose log goes with it.
- Admission: Pod Security `restricted` (the namespace's level), plus `refuse(pod)` from the test
  (quota, a missing service account).
- Kubelet: plays the test's `Script`; runs the runner's helper containers for real (their
  image's command, in processes of their own), each log merging stdout and stderr; kills the
  pod at the pod's own `activeDeadlineSeconds` (counted from `status.startTime`, which the
  client may lower while the pod lives) leaving it `Failed` with reason `DeadlineExceeded`;
  graceful deletion (`deletionTimestamp`, containers terminated, then gone).
- Garbage collector: an object's dependents (a Job's pods and Secrets; what a runner's owner
  ConfigMap owns) go a moment after it.
"""

from __future__ import annotations

import base64
import copy
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.helpers import ROOT
from tests.kubernetes.fake_admission import pod_security_violations
from tests.kubernetes.fake_scripts import Script, status

if TYPE_CHECKING:
    from tests.kubernetes.fake_api import FakeKubernetes

STEP_SECONDS = 0.02
API_BACKOFF_SECONDS = 0.05
MAX_API_BACKOFF_SECONDS = 32 * API_BACKOFF_SECONDS
GC_DELAY_SECONDS = 0.05


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class JobController:
    def __init__(self, fake: FakeKubernetes) -> None:
        self.fake = fake

    def resumed(self, job: dict[str, Any]) -> None:
        """The Job runs: stamp its start, make its pod (or say why not), mind its deadline."""
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        self.fake.patch("jobs", namespace, name, {"status": {"startTime": now()}}, internal=True)
        self.fake.background(self._deadline, job)
        self.fake.background(self._make_pod, job)

    def _make_pod(self, job: dict[str, Any]) -> None:
        """Create the pod; while admission refuses it, a FailedCreate event and a backoff."""
        pause = API_BACKOFF_SECONDS
        while self._wants_pod(job):
            pod = self._pod(job)
            reason = self._refusal(pod)
            if reason is None:
                self.fake.put("pods", pod["metadata"]["namespace"], pod, "ADDED")
                self.fake.background(Kubelet(self.fake, pod, self.fake.script(job)).play)
                return
            message = f'Error creating: pods "{pod["metadata"]["name"]}" is forbidden: {reason}'
            self._event(job, "FailedCreate", message)
            until = time.monotonic() + pause
            while time.monotonic() < until and self._wants_pod(job):
                self.fake.wait(until - time.monotonic())
            pause = min(2 * pause, MAX_API_BACKOFF_SECONDS)

    def _wants_pod(self, job: dict[str, Any]) -> bool:
        """The Job still exists, runs, and has not ended (its deadline, say)."""
        current = self.fake.get("jobs", job["metadata"]["namespace"], job["metadata"]["name"])
        if (
            self.fake.closed
            or current is None
            or current["metadata"]["uid"] != job["metadata"]["uid"]
        ):
            return False
        return not current["spec"].get("suspend") and not current["status"].get("conditions")

    def _refusal(self, pod: dict[str, Any]) -> str | None:
        """Pod Security admission of the namespace (`restricted`), then the test's own."""
        refused = pod_security_violations(pod["spec"])
        if refused:
            return f'violates PodSecurity "restricted:latest": {"; ".join(refused)}'
        return self.fake.refuse(pod)

    def _pod(self, job: dict[str, Any]) -> dict[str, Any]:
        template = job["spec"]["template"]
        meta = job["metadata"]
        labels = {**template["metadata"]["labels"], "job-name": meta["name"]}
        owner = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{meta['name']}-{uuid.uuid4().hex[:5]}",
                "namespace": meta["namespace"],
                "labels": labels,
                "uid": str(uuid.uuid4()),
                "ownerReferences": [owner],
            },
            "spec": copy.deepcopy(template["spec"]),
            "status": {"phase": "Pending"},
        }

    def _event(self, job: dict[str, Any], reason: str, message: str) -> None:
        meta = job["metadata"]
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{uuid.uuid4().hex[:8]}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "reason": reason,
            "message": message,
            "type": "Warning",
            "source": {"component": "job-controller"},
            "count": 1,
            "firstTimestamp": now(),
            "lastTimestamp": now(),
        }
        self.fake.put("events", meta["namespace"], event, "ADDED")

    def pod_ended(self, pod: dict[str, Any]) -> None:
        owner = pod["metadata"]["ownerReferences"][0]["name"]
        namespace = pod["metadata"]["namespace"]
        if pod["status"]["phase"] == "Succeeded":
            self._conditions(
                namespace,
                owner,
                "SuccessCriteriaMet",
                "Complete",
                "CompletionsReached",
                {"succeeded": 1, "completionTime": now()},
            )
        else:
            self._conditions(
                namespace, owner, "FailureTarget", "Failed", "BackoffLimitExceeded", {"failed": 1}
            )

    def _conditions(
        self,
        namespace: str,
        name: str,
        target: str,
        final: str,
        reason: str,
        counts: dict[str, Any],
    ) -> None:
        current = self.fake.get("jobs", namespace, name)
        if current is None or current["status"].get("conditions"):
            return
        conditions = [
            {
                "type": kind,
                "status": "True",
                "reason": reason,
                "message": reason,
                "lastTransitionTime": now(),
                "lastProbeTime": now(),
            }
            for kind in (target, final)
        ]
        self.fake.patch(
            "jobs", namespace, name, {"status": {"conditions": conditions, **counts}}, internal=True
        )

    def _deadline(self, job: dict[str, Any]) -> None:
        """The Job's activeDeadlineSeconds: FailureTarget, the pod deleted, then Failed."""
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        started = time.monotonic()
        while True:
            current = self.fake.get("jobs", namespace, name)
            if current is None or current["status"].get("conditions"):
                return
            limit = current["spec"].get("activeDeadlineSeconds")
            left = started + limit - time.monotonic() if limit else 1.0
            if limit and left <= 0:
                break
            self.fake.wait(min(left, 0.2))
        self._conditions(namespace, name, "FailureTarget", "Failed", "DeadlineExceeded", {})
        for pod in self.fake.list("pods", namespace, f"job-name={name}"):
            self.fake.delete("pods", namespace, pod["metadata"]["name"])


class Kubelet:
    """Plays one pod's `Script`."""

    def __init__(self, fake: FakeKubernetes, pod: dict[str, Any], script: Script) -> None:
        self.fake, self.script = fake, script
        self.namespace, self.name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        self.started = time.monotonic()
        self.logs: dict[str, bytes] = {}
        self.run_started: str | None = None
        self.helper_names = [c["name"] for c in pod["spec"].get("initContainers", [])]
        self.unpack_failure = script.unpack_fails

    def play(self) -> None:
        self._set(
            {
                "phase": "Pending",
                "startTime": now(),
                "conditions": [{"type": "PodScheduled", "status": "True"}],
            }
        )
        creating = {"waiting": {"reason": "ContainerCreating"}}
        self._set({"containerStatuses": [status("run", creating)]})
        if stopped := self._pause(self.script.start_delay):
            return self._stop(stopped)
        self.logs = {**self.script.logs, **self._helpers()}
        if self.unpack_failure is not None:
            return self._unpack_failed(self.unpack_failure)
        for index, state in enumerate(self.script.states):
            state = self._stamped(state)
            self._publish_logs(state)
            self._set(state)
            if index == 0 and self.script.during is not None:
                self.script.during(self.fake)
            if stopped := self._pause(self.script.pauses.get(index, STEP_SECONDS)):
                return self._stop(stopped)
        if self.script.hold:
            return self._stop(self._pause(float("inf")))
        pod = self.fake.get("pods", self.namespace, self.name)
        if pod is not None and pod["status"].get("phase") in ("Succeeded", "Failed"):
            self.fake.controller.pod_ended(pod)

    def _stamped(self, state: dict[str, Any]) -> dict[str, Any]:
        """A scripted state as the kubelet writes it: container times, helper statuses."""
        state = copy.deepcopy(state)
        for item in state.get("containerStatuses", []):
            if "running" in item["state"]:
                self.run_started = now()
                item["state"]["running"] = {"startedAt": self.run_started}
            if "terminated" in item["state"]:
                times = {"startedAt": self.run_started or now(), "finishedAt": now()}
                item["state"]["terminated"] = {**times, **item["state"]["terminated"]}
        if self.helper_names and "initContainerStatuses" not in state:
            state["initContainerStatuses"] = self._helper_statuses(state.get("phase"))
        return state

    def _helper_statuses(self, phase: str | None) -> list[dict[str, Any]]:
        """unpack has completed; the collect sidecar runs until the run's container has
        exited and it has written (native sidecars stop after the main containers)."""
        done = {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": now()}}
        statuses = [status("unpack", done)]
        if "collect" in self.helper_names:
            ended = phase in ("Succeeded", "Failed")
            state = done if ended else {"running": {"startedAt": now()}}
            statuses.append({**status("collect", state), "started": True})
        return statuses

    def _unpack_failed(self, message: str) -> None:
        failed = {"terminated": {"exitCode": 1, "reason": "Error", "message": message}}
        initializing = {"waiting": {"reason": "PodInitializing"}}
        self._set(
            {
                "phase": "Failed",
                "initContainerStatuses": [status("unpack", failed)],
                "containerStatuses": [status("run", initializing)],
            }
        )
        pod = self.fake.get("pods", self.namespace, self.name)
        if pod is not None:
            self.fake.controller.pod_ended(pod)

    def _publish_logs(self, state: dict[str, Any]) -> None:
        """The run's log once it runs; the collect sidecar's once the pod has ended (it
        writes after the run's container exits, and the pod ends when it has)."""
        if state.get("phase") in ("Succeeded", "Failed"):
            self.fake.set_logs(self.namespace, self.name, self.logs)
        elif state.get("phase") == "Running":
            early = {name: log for name, log in self.logs.items() if name != "collect"}
            self.fake.set_logs(self.namespace, self.name, early)

    def _set(self, status_patch: dict[str, Any]) -> None:
        self.fake.patch("pods", self.namespace, self.name, {"status": status_patch}, internal=True)

    def _pause(self, seconds: float) -> str | None:
        """Wait; "deleted" when the pod is being deleted meanwhile, "killed" when its deadline
        passed (the kubelet then killed it)."""
        until = time.monotonic() + seconds
        while True:
            pod = self.fake.get("pods", self.namespace, self.name)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                return "deleted"
            limit = pod["spec"].get("activeDeadlineSeconds")
            deadline = self.started + limit if limit else float("inf")
            if time.monotonic() >= deadline:
                self._killed_at_deadline()
                return "killed"
            if time.monotonic() >= until:
                return None
            self.fake.wait(min(until, deadline) - time.monotonic())

    def _stop(self, why: str | None) -> None:
        if why == "deleted":
            self._gone()

    def _killed_at_deadline(self) -> None:
        self.fake.set_logs(self.namespace, self.name, self.logs)
        killed = {
            "terminated": {
                "exitCode": 137,
                "reason": "Error",
                "startedAt": now(),
                "finishedAt": now(),
            }
        }
        self._set(
            {
                "phase": "Failed",
                "reason": "DeadlineExceeded",
                "message": "Pod was active on the node longer than the specified deadline",
                "containerStatuses": [status("run", killed)],
            }
        )
        pod = self.fake.get("pods", self.namespace, self.name)
        if pod is not None:
            self.fake.controller.pod_ended(pod)

    def _gone(self) -> None:
        """Graceful deletion: the containers are stopped, then the pod object goes."""
        pod = self.fake.get("pods", self.namespace, self.name)
        if pod is None:
            return
        if pod["status"].get("phase") not in ("Succeeded", "Failed"):
            stopped = {"terminated": {"exitCode": 143, "reason": "Error"}}
            self._set({"phase": "Failed", "containerStatuses": [status("run", stopped)]})
        self.fake.remove("pods", self.namespace, self.name)

    def _helpers(self) -> dict[str, bytes]:
        """What the runner's helper containers do in a real pod, really done, in the order the
        kubelet keeps: unpack; the collect sidecar, until it says it is ready; the run's own
        command (`program`); then SIGTERM to the sidecar, which writes the returned paths.
        Each helper is its image's command in a process of its own whose log, as a container
        runtime keeps it, merges its stdout and stderr."""
        pod = self.fake.get("pods", self.namespace, self.name) or {}
        helpers = {c["name"]: c for c in pod["spec"].get("initContainers", [])}
        if "unpack" not in helpers:
            return {}
        with tempfile.TemporaryDirectory() as scratch:
            source, root = Path(scratch, "input"), Path(scratch, "content")
            source.mkdir()
            root.mkdir()
            for volume in pod["spec"]["volumes"]:
                if "secret" in volume:
                    secret = self.fake.get(
                        "secrets", self.namespace, volume["secret"]["secretName"]
                    ) or {"data": {}}
                    for item, value in secret["data"].items():
                        (source / item).write_bytes(base64.b64decode(value))
            unpack = _helper(helpers["unpack"], scratch)
            unpacked, _ = unpack.communicate()
            if unpack.returncode:
                # FallbackToLogsOnError: the failed container's log is its termination message
                self.unpack_failure = self.unpack_failure or unpacked[-2048:].decode()
                return {"unpack": unpacked}
            collect = _helper(helpers["collect"], scratch) if "collect" in helpers else None
            if collect is not None:
                assert collect.stdout is not None
                ready = collect.stdout.readline()  # its startupProbe passes: the run starts
            if self.script.program is not None:
                self.script.program(root)
            if collect is None:
                return {"unpack": unpacked}
            collect.send_signal(signal.SIGTERM)  # the run's container has exited
            written, _ = collect.communicate()
            log = ready + written
            return {"unpack": unpacked, "collect": log[: self.script.collect_cut]}


def _helper(container: dict[str, Any], root: str) -> subprocess.Popen[bytes]:
    """A helper container's command (`python -m backends.kubernetes.pod_helper ...`) with its
    pod's /oneoff at `root`; stdout and stderr are one stream, as in a pod's log."""
    python, *arguments = container["command"]
    assert python == "python", container["command"]
    return subprocess.Popen(
        [sys.executable, *arguments],
        cwd=ROOT,
        env={**os.environ, "ONEOFF_POD_ROOT": root},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
