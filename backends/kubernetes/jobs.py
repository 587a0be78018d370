"""The Job operations both kinds of Kubernetes run use (synchronous: `backend`; async: `runs`),
in one class: metadata, the Job created suspended with the Secrets it needs (content, pull
credentials) owned by it, then resumed; its pod followed and read (`pods`); the Job deleted
with its pods and Secrets. It holds this runner's lease too."""

from __future__ import annotations

from typing import Any

from backends.kubernetes.api import ClusterApi
from backends.kubernetes.errors import api_errors
from backends.kubernetes.manifests import content_secret, job, pull_secret
from backends.kubernetes.pods import RunPods
from backends.leases import Lease
from runner.errors import Cancelled, NotFound, PayloadTooLarge, VolumeNotFound
from runner.spec import RunControl, RunSpec

SECRET_LIMIT_BYTES = 1024 * 1024  # the API server's limit on one Secret
BACKGROUND = "Background"


class Jobs:
    def __init__(self, api: ClusterApi) -> None:
        self.api = api
        self.settings = api.settings
        self.namespace = api.namespace
        self.pods = RunPods(api)
        self.lease = Lease(
            self.settings.instance_id,
            self.settings.lease_seconds,
            self._create_lease,
            self.delete_config_map,
        )

    def meta(
        self, name: str, kept: dict[str, str], annotations: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Metadata of a Job, record or lease: owned by `RUNNER_KUBE_OWNER`, when set."""
        meta: dict[str, Any] = {"name": name, "namespace": self.namespace, "labels": kept}
        if annotations:
            meta["annotations"] = annotations
        owners = self.api.owner_references()
        if owners:
            meta["ownerReferences"] = owners
        return meta

    def create_job(
        self, spec: RunSpec, control: RunControl, meta: dict[str, Any], ttl: int
    ) -> None:
        """The Job, suspended; its Secrets, owned by it; then the Job resumed."""
        for mount in spec.mounts:
            if mount.kind == "volume":
                self._require_claim(mount.key, str(mount.name))
        name = meta["name"]
        secrets = self._secrets(spec, name, {**meta, "annotations": {}})
        manifest = job(
            spec,
            self.settings,
            meta,
            content_secret_name=f"{name}-content" if f"{name}-content" in secrets else None,
            pull_secret_name=f"{name}-pull" if spec.auth else None,
            ttl=ttl,
        )
        control.emit("phase", "creating the Job")
        with api_errors("creating the Job"):
            created = self.api.batch.create_namespaced_job(self.namespace, manifest)
        owner = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": name,
            "uid": created.metadata.uid,
            "blockOwnerDeletion": True,
        }
        with api_errors("creating the run's Secrets"):
            for secret in secrets.values():
                secret["metadata"]["ownerReferences"] = [owner]
                self.api.core.create_namespaced_secret(self.namespace, secret)
        if control.cancelled.is_set():
            raise Cancelled("the run was cancelled before it started")
        with api_errors("starting the Job"):
            body = {"spec": {"suspend": False}}
            self.api.batch.patch_namespaced_job(name, self.namespace, body)
        control.emit("phase", "waiting for the pod")

    def _secrets(self, spec: RunSpec, name: str, meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
        secrets: dict[str, dict[str, Any]] = {}
        content = content_secret(spec, {**meta, "name": f"{name}-content"})
        if content is not None:
            size = sum(len(value) for value in content["data"].values())
            if size > SECRET_LIMIT_BYTES:
                raise PayloadTooLarge(
                    f"volumes: {size} bytes of content (base64) exceed what one Kubernetes "
                    f"Secret holds ({SECRET_LIMIT_BYTES}); send less, or put it in a "
                    "PersistentVolumeClaim and mount it as a volume",
                    field="volumes",
                )
            secrets[f"{name}-content"] = content
        if spec.auth is not None:
            secrets[f"{name}-pull"] = pull_secret(
                spec.auth, spec.image, {**meta, "name": f"{name}-pull"}
            )
        return secrets

    def _require_claim(self, key: str, claim: str) -> None:
        try:
            with api_errors("reading the PersistentVolumeClaim"):
                self.api.core.read_namespaced_persistent_volume_claim(claim, self.namespace)
        except NotFound:
            raise VolumeNotFound(
                f"volumes[{key!r}].name: no PersistentVolumeClaim {claim!r} in namespace "
                f"{self.namespace!r}; create it first (POST /volume)",
                field=f"volumes[{key!r}].name",
            ) from None

    def delete(self, name: str) -> None:
        """The Job with its pods; its Secrets go with it, and are deleted here too."""
        batch, core = self.api.batch, self.api.core
        for delete, target in (
            (batch.delete_namespaced_job, name),
            (core.delete_namespaced_secret, f"{name}-content"),
            (core.delete_namespaced_secret, f"{name}-pull"),
        ):
            try:
                with api_errors(f"deleting {target}"):
                    delete(target, self.namespace, propagation_policy=BACKGROUND)
            except NotFound:
                pass  # already gone, or never made

    def _create_lease(self, name: str, kept: dict[str, str]) -> None:
        lease = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": self.meta(name, kept)}
        with api_errors("renewing the runner's lease"):
            self.api.core.create_namespaced_config_map(self.namespace, lease)

    def delete_config_map(self, name: str) -> None:
        """A lease or a run's record; one already gone is no error."""
        try:
            with api_errors(f"deleting {name}"):
                self.api.core.delete_namespaced_config_map(name, self.namespace)
        except NotFound:
            pass
