"""The objects one run becomes on Kubernetes, as plain manifests (dicts): a Job, a Secret with the
run's content, and a pull Secret for its credentials. No API calls here, so every manifest can
be checked against the Kubernetes schemas on its own.

Content reaches the pod without relying on tools in the user's image: an init container of the
runner's own image (`python -m backends.kubernetes.pod_helper unpack`) unpacks the Secret into
an `emptyDir`, which the run mounts (`subPath` per path, `readOnly` for `:ro`). `response: true`
paths come back through a native sidecar of the same image (`collect`): the kubelet stops it
when the run's container has exited, and it then writes the paths to its own log.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from backends.kubernetes.returned import return_limit
from backends.labels import volume_labels
from backends.waiter import WAITER
from runner.errors import InvalidRequest, PolicyRefused
from runner.registries import names_registry
from runner.settings import Settings
from runner.spec import MountSpec, RegistryAuth, RunSpec, VolumeFill

RUN_CONTAINER = "run"
UNPACK_CONTAINER = "unpack"
COLLECT_CONTAINER = "collect"
CONTENT_VOLUME = "content"
SECRET_VOLUME = "input"
CONTENT_ROOT = "/oneoff/content"
SECRET_ROOT = "/oneoff/input"
COLLECT_READY = ".collect-ready"
PULL_POLICIES = {"always": "Always", "missing": "IfNotPresent", "never": "Never"}
JOB_BACKSTOP_SECONDS = 60  # the Job's deadline, past the pod's
HELPER_COMMAND = ["python", "-m", "backends.kubernetes.pod_helper"]  # the image's venv python
# The helpers stream (48 KiB chunks); a native sidecar's requests add to the run's own for as
# long as the pod lives, so they ask for what they use. Measured peak RSS (`uv run python -m
# bench.pod_helper`: GNU time around HELPER_COMMAND, Python 3.11.7 as in the image, a 2-core
# Xeon VM, 2026-11-22): 17.5 MiB to start, 19.2 MiB collecting 7 MiB (the default
# RUNNER_KUBE_RETURN_LIMIT_BYTES; 19.6 MiB for 64 MiB), 18.9 MiB unpacking the largest content
# (1 MiB of base64: random bytes and 256 MiB of zeros). Request 32Mi: peak + 65 %; limit 64Mi:
# over 3 x peak, for another Python or libc. Page cache of unpacked files is not in these
# figures (it is reclaimable). tests/kubernetes/test_pod_helper_memory.py holds them.
HELPER_RESOURCES = {
    "requests": {"cpu": "10m", "memory": "32Mi"},
    "limits": {"cpu": "500m", "memory": "64Mi"},
}


RUN_GRACE_SECONDS = 1  # after SIGTERM, before SIGKILL; the kubelet makes it at least 2 s
COLLECT_GRACE_SECONDS = 5
COLLECT_SECONDS_PER_MIB = 1  # measured: 7 MiB written in about 2 s, on a 2-core node


def job_name(run_id: str) -> str:
    return f"oneoff-{run_id}"


def content_secret(spec: RunSpec, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The run's files and directory archives, one key per mount (`m<index>`)."""
    data = {
        f"m{index}": base64.b64encode(mount.content).decode()
        for index, mount in enumerate(spec.mounts)
        if mount.kind in ("file", "directory") and mount.content
    }
    if not data:
        return None
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta, "data": data}


def pull_secret(auth: RegistryAuth, image: str, meta: dict[str, Any]) -> dict[str, Any]:
    """A `kubernetes.io/dockerconfigjson` Secret for one pull, for the image's registry."""
    server = auth.serveraddress or registry_of(image)
    token = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
    entry = {"username": auth.username, "password": auth.password, "auth": token}
    if auth.email:
        entry["email"] = auth.email
    config = json.dumps({"auths": {server: entry}})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": meta,
        "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()},
    }


def registry_of(image: str) -> str:
    """The registry's key in a docker config (Docker Hub's is its legacy address)."""
    return image.split("/", 1)[0] if names_registry(image) else "https://index.docker.io/v1/"


def job(
    spec: RunSpec,
    settings: Settings,
    meta: dict[str, Any],
    *,
    content_secret_name: str | None,
    pull_secret_name: str | None,
    ttl: int,
) -> dict[str, Any]:
    """The run's Job: suspended, so the Secrets it owns exist before its pod does.

    Two deadlines: the pod's own (`activeDeadlineSeconds` of the pod, counted by the kubelet
    from the pod's start; the runner lowers it once the run's container starts, so the clock
    runs from there) and the Job's, later, a backstop for a runner that is gone."""
    _require_pod_network(spec)
    _refuse_stdin(spec)
    timeout = max(1, math.ceil(spec.timeout_seconds))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "suspend": True,
            "backoffLimit": 0,
            "activeDeadlineSeconds": start_grace(settings) + timeout + JOB_BACKSTOP_SECONDS,
            "ttlSecondsAfterFinished": ttl,
            "template": {
                "metadata": {"labels": meta["labels"]},
                "spec": pod_spec(spec, settings, content_secret_name, pull_secret_name),
            },
        },
    }


def warm_pod(
    spec: RunSpec, settings: Settings, meta: dict[str, Any], deadline: int
) -> dict[str, Any]:
    """A warm pool pod: the pod a run of `spec` gets, its run container a shell waiting on its
    open input (`backends.waiter.WAITER`) for the line that makes it a run. It pulls its image
    when it starts; its `deadline` (`activeDeadlineSeconds`) must outlast its idle time and the
    longest run, since a take may only lower it (the API server never lets it be raised)."""
    pod = pod_spec(spec, settings, None, None)
    pod["activeDeadlineSeconds"] = deadline
    container = pod["containers"][0]
    container.update(
        command=["/bin/sh", "-c", WAITER], stdin=True, stdinOnce=True, imagePullPolicy="Always"
    )
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod}


def warm_shape(spec: RunSpec, settings: Settings) -> dict[str, Any]:
    """The pod of a run of `spec` but for what a warm pod's line sets (command, environment,
    working dir), its image (matched by name), deadline and pull policy: a run fits a warm pod
    made from a spec of the same shape."""
    pod = pod_spec(spec, settings, None, None)
    del pod["activeDeadlineSeconds"]
    for key in ("image", "command", "args", "env", "workingDir", "imagePullPolicy"):
        pod["containers"][0].pop(key, None)
    return pod


def start_grace(settings: Settings) -> int:
    """Seconds a pod has to be scheduled and pull its images before the run's clock starts."""
    return math.ceil(settings.kube_start_timeout_seconds)


def _require_pod_network(spec: RunSpec) -> None:
    if spec.network != "none":
        raise PolicyRefused(
            f"network: {spec.network!r} is not available on Kubernetes; a run pod's network is "
            "set by the chart's NetworkPolicy (networkPolicy.egress)",
            field="network",
        )


def _refuse_stdin(spec: RunSpec) -> None:
    if spec.stdin is not None:
        raise InvalidRequest(
            "stdin: standard input is not available on the Kubernetes backend (a run pod has "
            "no attached input); put the text in a file volume and redirect it, e.g. "
            "sh -c 'cmd < /input.txt'",
            field="stdin",
        )


def pod_spec(
    spec: RunSpec,
    settings: Settings,
    content_secret_name: str | None,
    pull_secret_name: str | None,
) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "activeDeadlineSeconds": start_grace(settings) + max(1, math.ceil(spec.timeout_seconds)),
        "terminationGracePeriodSeconds": termination_grace(spec, settings),
        "securityContext": _pod_security(spec, settings),
        "containers": [_run_container(spec, settings)],
        "volumes": _volumes(spec, settings, content_secret_name),
    }
    helpers = _helpers(spec, settings, content_secret_name is not None)
    if helpers:
        pod["initContainers"] = helpers
    pull_secrets = [
        *settings.kube_image_pull_secrets,
        *([pull_secret_name] if pull_secret_name else []),
    ]
    optional = {
        "serviceAccountName": settings.kube_service_account,
        "nodeSelector": settings.kube_node_selector,
        "tolerations": settings.kube_tolerations,
        "runtimeClassName": spec.runtime,
        "imagePullSecrets": [{"name": name} for name in pull_secrets],
    }
    pod.update({key: value for key, value in optional.items() if value})
    return pod


def termination_grace(spec: RunSpec, settings: Settings) -> int:
    """Seconds from SIGTERM to SIGKILL when the pod is stopped. A run's processes get next to
    none, as on Docker, where a timeout kills at once (the default 30 s made every run that
    ignores SIGTERM, as a shell does as PID 1, answer its timeout 30 s late). The collect
    sidecar is stopped the same way once the run's container has exited, and writes the
    returned paths in that time: 5 s, and 1 s per MiB it may return."""
    if not any(step["response"] for step in plan(spec)):
        return RUN_GRACE_SECONDS
    limit = return_limit(settings, spec.max_response_bytes).size
    return COLLECT_GRACE_SECONDS + math.ceil(limit * COLLECT_SECONDS_PER_MIB / 2**20)


def _pod_security(spec: RunSpec, settings: Settings) -> dict[str, Any]:
    uid, gid = run_as(spec.user, settings)
    return {
        "runAsUser": uid,
        "runAsGroup": gid,
        "fsGroup": gid,
        "fsGroupChangePolicy": "OnRootMismatch",
        "runAsNonRoot": uid != 0,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def run_as(user: str | None, settings: Settings) -> tuple[int, int]:
    """A request's `user` as (uid, gid): Kubernetes takes numbers only."""
    if user in (None, ""):
        return settings.kube_run_as_user, settings.kube_run_as_user
    uid_text, _, gid_text = str(user).partition(":")
    if not uid_text.isdigit() or (gid_text and not gid_text.isdigit()):
        raise InvalidRequest(
            f"user: {user!r} is not numeric; on Kubernetes give uid or uid:gid, e.g. '1000:1000'",
            field="user",
        )
    uid = int(uid_text)
    if uid == 0 and not settings.kube_allow_root:
        raise PolicyRefused(
            "user: running as root (uid 0) is refused on this runner; use a non-root uid",
            field="user",
        )
    return uid, int(gid_text) if gid_text else uid


def _container_security(kept: list[str] | None = None) -> dict[str, Any]:
    capabilities: dict[str, Any] = {"drop": ["ALL"]}
    if kept:
        capabilities["add"] = kept
    return {"allowPrivilegeEscalation": False, "capabilities": capabilities}


def scratch_size(spec: RunSpec, settings: Settings) -> str:
    """The run's `scratch` as a Kubernetes quantity, never more than RUNNER_KUBE_SCRATCH_SIZE:
    the kubelet evicts a pod past it (its containers' ephemeral-storage, its emptyDirs)."""
    ceiling = settings.kube_scratch_size
    try:
        if parse_quantity(ceiling) <= spec.scratch_bytes:
            return ceiling
    except ValueError:
        return ceiling  # the API server says what is wrong with it
    for unit, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if spec.scratch_bytes % size == 0:
            return f"{spec.scratch_bytes // size}{unit}"
    return str(spec.scratch_bytes)


def _run_container(spec: RunSpec, settings: Settings) -> dict[str, Any]:
    """Capabilities (RUNNER_CAP_ADD) reach only a root process: a non-root one starts with
    none in effect whatever the bounding set, so they are added for uid 0 only."""
    millicores = max(1, spec.nano_cpus // 1_000_000)
    limits = {
        "cpu": f"{millicores}m",
        "memory": str(spec.memory_bytes),
        "ephemeral-storage": scratch_size(spec, settings),
    }
    root = run_as(spec.user, settings)[0] == 0
    container: dict[str, Any] = {
        "name": RUN_CONTAINER,
        "image": spec.image,
        "imagePullPolicy": "Always" if spec.auth else PULL_POLICIES[spec.pull_policy],
        "env": [{"name": key, "value": value} for key, value in spec.env.items()],
        "resources": {"limits": limits, "requests": dict(limits)},
        "securityContext": _container_security(settings.cap_add if root else None),
        "volumeMounts": [_run_mount(index, mount) for index, mount in enumerate(spec.mounts)],
    }
    if spec.entrypoint is not None:
        container["command"] = spec.entrypoint
    if spec.command is not None:
        container["args"] = spec.command
    if spec.working_dir:
        container["workingDir"] = spec.working_dir
    return container


def _run_mount(index: int, mount: MountSpec) -> dict[str, Any]:
    if mount.kind in ("file", "directory"):
        sub_path = f"{index}/file" if mount.kind == "file" else str(index)
        return {
            "name": CONTENT_VOLUME,
            "mountPath": mount.path,
            "subPath": sub_path,
            "readOnly": mount.read_only,
        }
    return {"name": f"v{index}", "mountPath": mount.path, "readOnly": mount.read_only}


def _volumes(
    spec: RunSpec, settings: Settings, content_secret_name: str | None
) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = []
    if any(mount.kind in ("file", "directory") for mount in spec.mounts):
        scratch = {"sizeLimit": scratch_size(spec, settings)}
        volumes.append({"name": CONTENT_VOLUME, "emptyDir": scratch})
    if content_secret_name:
        volumes.append({"name": SECRET_VOLUME, "secret": {"secretName": content_secret_name}})
    for index, mount in enumerate(spec.mounts):
        if mount.kind == "volume":
            claim = {"claimName": mount.name, "readOnly": mount.read_only}
            volumes.append({"name": f"v{index}", "persistentVolumeClaim": claim})
        elif mount.kind == "host":
            host = {"path": mount.host_path, "type": "Directory"}
            volumes.append({"name": f"v{index}", "hostPath": host})
    return volumes


def plan(spec: RunSpec) -> list[dict[str, Any]]:
    """What the pod helper does per content path: its index, kind, mode, whether it has
    content (in the Secret) and whether it goes back (`response`)."""
    return [
        {
            "index": index,
            "path": mount.path,
            "kind": mount.kind,
            "mode": mount.mode,
            "content": bool(mount.content),
            "writable": not mount.read_only,
            "response": mount.response,
        }
        for index, mount in enumerate(spec.mounts)
        if mount.kind in ("file", "directory")
    ]


def _helpers(spec: RunSpec, settings: Settings, has_secret: bool) -> list[dict[str, Any]]:
    """The unpacking init container, and the collecting sidecar when paths go back."""
    steps = plan(spec)
    if not steps:
        return []
    mounts: list[dict[str, Any]] = [{"name": CONTENT_VOLUME, "mountPath": CONTENT_ROOT}]
    if has_secret:
        mounts.append({"name": SECRET_VOLUME, "mountPath": SECRET_ROOT, "readOnly": True})
    helper = {
        "image": settings.kube_helper_image,
        "imagePullPolicy": "IfNotPresent",
        "securityContext": _container_security(),
        "resources": HELPER_RESOURCES,
        "terminationMessagePolicy": "FallbackToLogsOnError",  # its error, in the pod's status
    }
    containers = [
        {
            **helper,
            "name": UNPACK_CONTAINER,
            "command": [*HELPER_COMMAND, "unpack", json.dumps(steps)],
            "volumeMounts": mounts,
        }
    ]
    if any(step["response"] for step in steps):
        limit = str(return_limit(settings, spec.max_response_bytes).size)
        containers.append(
            {
                **helper,
                "name": COLLECT_CONTAINER,
                "restartPolicy": "Always",
                "command": [*HELPER_COMMAND, "collect", json.dumps(steps), limit],
                "volumeMounts": mounts[:1],
                # the run's container starts only once the collector awaits its SIGTERM
                "startupProbe": {
                    "exec": {"command": ["test", "-f", f"{CONTENT_ROOT}/{COLLECT_READY}"]},
                    "periodSeconds": 1,
                    "failureThreshold": 60,
                },
            }
        )
    return containers


def claim(fill: VolumeFill, instance: str) -> dict[str, Any]:
    """A named volume as a PersistentVolumeClaim: `driver` is its storage class,
    `driver_opts.size` its size (1Gi by default). Labelled as made through the API, for the
    tenant that asked."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": fill.driver_opts.get("size", "1Gi")}},
    }
    if fill.driver:
        spec["storageClassName"] = fill.driver
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": fill.name, "labels": volume_labels(fill, instance)},
        "spec": spec,
    }
