"""What the Kubernetes backend may do and what it has made: permissions (the chart's Role is
`PERMISSIONS`), the API server's health, the runner's Jobs, the tenants' claims."""

from __future__ import annotations

from typing import Any

import kubernetes
from kubernetes.client import ApiClient

from backends.kubernetes.errors import api_errors
from backends.labels import (
    CREATED_BY,
    MANAGED,
    POOL,
    ROLE,
    RUN_ID,
    RUN_ROLE,
    TENANT,
    VOLUME_API,
    caller_labels,
    volume_tenant,
)
from runner.engine_models import ContainerInfo, Health, VolumeInfo
from runner.errors import NotFound, RunnerError, VolumeNotFound

# Exactly what the Kubernetes backend calls, in the run namespace: the chart's Role grants
# this (tests check both ways).
PERMISSIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("batch", "jobs"): ("create", "delete", "get", "list", "patch"),
    ("", "pods"): ("create", "delete", "list", "patch", "watch"),  # create, delete: warm pods
    # a warm pod's attach: a websocket upgrade of a GET, which API servers from 1.31 also
    # authorize as create
    ("", "pods/attach"): ("create", "get"),
    ("", "events"): ("list",),
    ("", "pods/log"): ("get",),
    ("", "secrets"): ("create", "delete"),
    ("", "configmaps"): ("create", "delete", "get", "list", "patch"),
    # blockOwnerDeletion on the Secrets the Job owns, where OwnerReferencesPermissionEnforcement
    # admission is on (OpenShift): the API server checks it, the runner never calls it
    ("batch", "jobs/finalizers"): ("update",),
    ("", "persistentvolumeclaims"): ("create", "delete", "get", "list"),
}
WARM_ONLY = frozenset(
    {("", "pods", "create"), ("", "pods", "delete")}
    | {("", "pods/attach", verb) for verb in PERMISSIONS["", "pods/attach"]}
)
"""What only a warm pool calls (`backends.kubernetes.warm`): required by health with one."""

# Settings a pod spec has no field for: the node decides them.
NOT_APPLIED = (
    "RUNNER_PIDS_LIMIT, RUNNER_NOFILE_LIMIT: set per node on Kubernetes (the kubelet's "
    "podPidsLimit, the container runtime's ulimits)"
)


def health(client: ApiClient, namespace: str, warm: bool) -> Health:
    """The API answers, and this service account may do everything a run needs (`warm`: the
    warm pool's calls too)."""
    with api_errors("checking the API server"):
        version = kubernetes.client.VersionApi(client).get_code()
        authorization = kubernetes.client.AuthorizationV1Api(client)
        for (group, resource), verbs in PERMISSIONS.items():
            for verb in verbs:
                if warm or (group, resource, verb) not in WARM_ONLY:
                    _require(authorization, namespace, group, resource, verb)
    return Health(
        backend="kubernetes",
        version=str(version.git_version),
        details={
            "namespace": namespace,
            "platform": str(version.platform),
            "not_applied": NOT_APPLIED,
        },
    )


def _require(api: Any, namespace: str, group: str, resource: str, verb: str) -> None:
    kind, _, sub = resource.partition("/")
    attributes = {"namespace": namespace, "verb": verb, "group": group, "resource": kind}
    if sub:
        attributes["subresource"] = sub
    answer = api.create_self_subject_access_review({"spec": {"resourceAttributes": attributes}})
    if not answer.status.allowed:
        raise RunnerError(
            f"the runner's service account may not {verb} {resource} in namespace "
            f"{namespace!r}; install the chart's Role or grant it"
        )


def jobs(
    batch: Any, namespace: str, tenant: str, all_states: bool, managed_only: bool
) -> list[ContainerInfo]:
    selector = f"{MANAGED}=true,{TENANT}={tenant}" if managed_only else None
    with api_errors("listing Jobs"):
        found = batch.list_namespaced_job(namespace, label_selector=selector)
    infos = [_job_info(item) for item in found.items]
    return [info for info in infos if all_states or info.status == "active"]


def warm_runs(core: Any, namespace: str, tenant: str, all_states: bool) -> list[ContainerInfo]:
    """The tenant's synchronous runs in warm pods (`backends.kubernetes.warm`), which have no
    Job."""
    selector = f"{MANAGED}=true,{TENANT}={tenant},{ROLE}={RUN_ROLE},{POOL}"
    with api_errors("listing warm pods"):
        found = core.list_namespaced_pod(namespace, label_selector=selector)
    infos = [
        ContainerInfo(
            id=str(item.metadata.uid)[:12],
            name=item.metadata.name,
            image=item.spec.containers[0].image,
            status=_POD_STATES.get(item.status.phase, "active"),
            run_id=(item.metadata.labels or {}).get(RUN_ID),
        )
        for item in found.items
    ]
    return [info for info in infos if all_states or info.status == "active"]


_POD_STATES = {"Succeeded": "succeeded", "Failed": "failed"}


def _job_info(item: Any) -> ContainerInfo:
    status = item.status
    state = "active" if status.active else "succeeded" if status.succeeded else "failed"
    containers = item.spec.template.spec.containers
    return ContainerInfo(
        id=str(item.metadata.uid)[:12],
        name=item.metadata.name,
        image=containers[0].image if containers else "",
        status=state,
        run_id=(item.metadata.labels or {}).get(RUN_ID),
    )


def claims(core: Any, namespace: str, tenant: str) -> list[VolumeInfo]:
    """The tenant's named volumes: the claims POST /volume labelled for it, never any other."""
    selector = f"{CREATED_BY}={VOLUME_API},{TENANT}={tenant}"
    with api_errors("listing PersistentVolumeClaims"):
        found = core.list_namespaced_persistent_volume_claim(namespace, label_selector=selector)
    listed = [
        VolumeInfo(
            name=item.metadata.name,
            driver=item.spec.storage_class_name or "",
            created_at=_rfc3339(item.metadata.creation_timestamp),
            labels=caller_labels(item.metadata.labels or {}),
        )
        for item in found.items
        if volume_tenant(item.metadata.labels or {}) == tenant
    ]
    return sorted(listed, key=lambda volume: volume.name)


def _rfc3339(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None


def remove_claim(core: Any, namespace: str, name: str) -> None:
    """Delete the claim; the cluster's `pvc-protection` finalizer keeps it (and its data)
    until no pod mounts it, so a run using it is never cut off."""
    try:
        with api_errors("deleting the PersistentVolumeClaim"):
            # the answer (the claim, kept by its finalizer; or a Status) is not needed
            answer = core.delete_namespaced_persistent_volume_claim(
                name, namespace, _preload_content=False
            )
            answer.release_conn()
    except NotFound:
        raise VolumeNotFound(f"name: volume {name!r} no longer exists", field="name") from None
