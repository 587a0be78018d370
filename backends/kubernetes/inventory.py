"""What the Kubernetes backend may do and what it has made: permissions (the chart's Role is
`PERMISSIONS`), the API server's health, the runner's Jobs."""

from __future__ import annotations

from typing import Any

import kubernetes
from kubernetes.client import ApiClient

from backends.kubernetes.errors import api_errors
from runner.backend import MANAGED, RUN_ID, TENANT
from runner.errors import RunnerError
from runner.models import ContainerInfo, Health

# Exactly what the Kubernetes backend calls, in the run namespace: the chart's Role grants
# this (tests check both ways).
PERMISSIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("batch", "jobs"): ("create", "delete", "get", "list", "patch"),
    ("", "pods"): ("list", "patch", "watch"),
    ("", "events"): ("list",),
    ("", "pods/log"): ("get",),
    ("", "secrets"): ("create", "delete"),
    ("", "configmaps"): ("create", "delete", "list"),
    # blockOwnerDeletion on the Secrets the Job owns, where OwnerReferencesPermissionEnforcement
    # admission is on (OpenShift): the API server checks it, the runner never calls it
    ("batch", "jobs/finalizers"): ("update",),
    ("", "persistentvolumeclaims"): ("create", "get"),
}

# Settings a pod spec has no field for: the node decides them.
NOT_APPLIED = (
    "RUNNER_PIDS_LIMIT, RUNNER_NOFILE_LIMIT: set per node on Kubernetes (the kubelet's "
    "podPidsLimit, the container runtime's ulimits)"
)


def health(client: ApiClient, namespace: str) -> Health:
    """The API answers, and this service account may do everything a run needs."""
    with api_errors("checking the API server"):
        version = kubernetes.client.VersionApi(client).get_code()
        authorization = kubernetes.client.AuthorizationV1Api(client)
        for (group, resource), verbs in PERMISSIONS.items():
            for verb in verbs:
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
