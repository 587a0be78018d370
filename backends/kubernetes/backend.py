"""The Kubernetes backend: one run is one `batch/v1` Job, through the official `kubernetes` client.

One run: the Job is created suspended → the Secrets it needs (content, pull credentials) are
created owned by it → it is resumed → its pod is watched (never polled) until it ends, or a
container cannot start (an image that cannot be pulled is an error at once, not a hang) → the
run's log and returned paths are read → the Job is deleted with its pods and Secrets, in
`finally`. Pod logs merge stdout and stderr; results say so (`streams_merged`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import urllib3
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api
from kubernetes.config.config_exception import ConfigException

from backends.kubernetes import inventory
from backends.kubernetes.errors import api_errors
from backends.kubernetes.manifests import (
    claim,
    content_secret,
    job,
    job_name,
    pull_secret,
)
from backends.kubernetes.pods import RunPods
from backends.kubernetes.runs import JobRuns
from backends.labels import (
    LEASE_ROLE,
    MANAGED,
    RECORD_ROLE,
    ROLE,
    RUN_ROLE,
    run_labels,
    volume_tenant,
)
from backends.leases import Lease, abandoned, live_owners, past_deadline
from runner.backend import OutputStream
from runner.engine_models import ContainerInfo, Health, ImageInfo, VolumeInfo
from runner.errors import (
    Cancelled,
    Conflict,
    NotFound,
    PayloadTooLarge,
    RunnerError,
    Unsupported,
    VolumeNotFound,
)
from runner.settings import Settings
from runner.spec import (
    Arriving,
    CollectSpec,
    Outcome,
    PullSpec,
    RunControl,
    RunRecord,
    RunSpec,
    VolumeFill,
    VolumeState,
    timed,
)

log = logging.getLogger("oneoff_runner.kubernetes")

END_GRACE_SECONDS = 60  # past the timeout: the kubelet's kill, the helpers' collect
SECRET_LIMIT_BYTES = 1024 * 1024  # the API server's limit on one Secret
BACKGROUND = "Background"
RETRIES = urllib3.Retry(
    total=5,
    backoff_factor=0.2,
    status_forcelist=(429, 500, 502, 503, 504),
    allowed_methods=frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"}),
    respect_retry_after_header=True,
    raise_on_status=False,
)


class KubernetesBackend:
    name = "kubernetes"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.namespace = settings.kube_namespace
        self._lock = threading.Lock()
        self._client: ApiClient | None = None
        self.jobs = JobRuns(self)
        self.pods = RunPods(self)
        self.lease = Lease(
            settings.instance_id, settings.lease_seconds, self._create_lease, self._delete_record
        )

    @property
    def client(self) -> ApiClient:
        """In-cluster config inside a pod, else the kubeconfig; made on first use. Calls are
        retried with backoff on connection errors and 429/5xx answers (creates only when the
        request never reached the server), over TCP keepalive connections."""
        with self._lock:
            if self._client is None:
                config = kubernetes.client.Configuration()
                with api_errors("loading the Kubernetes configuration"):
                    try:
                        kubernetes.config.load_incluster_config(client_configuration=config)
                    except ConfigException:
                        kubernetes.config.load_kube_config(
                            config_file=str(self.settings.kubeconfig or "~/.kube/config"),
                            context=self.settings.kube_context,
                            client_configuration=config,
                        )
                config.retries = RETRIES
                config.keep_alive = True  # a dead API server connection is noticed, not hung on
                self._client = ApiClient(config)
            return self._client

    # The client's models make every field Optional; the wire is what the tests check, so
    # the APIs are used untyped here.
    @property
    def batch(self) -> Any:
        return BatchV1Api(self.client)

    @property
    def core(self) -> Any:
        return CoreV1Api(self.client)

    def close(self) -> None:
        try:
            self.lease.release()
        except RunnerError as exc:
            log.warning("the runner's lease could not be released (it expires): %s", exc.message)
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = None

    # ---- runs -------------------------------------------------------------------------------

    def run(self, spec: RunSpec, control: RunControl) -> Outcome:
        _inline_content_only(control.uploads)
        phases: dict[str, float] = {}
        name = job_name(spec.run_id)
        try:
            with timed(phases, "create"):
                self.lease.hold()
                instance = self.settings.instance_id
                kept = run_labels(
                    spec.run_id, instance, RUN_ROLE, spec.tenant, spec.timeout_seconds
                )
                meta = self.meta(name, {**kept, **self.lease.labels()})
                self.create_job(spec, control, meta, self.settings.kube_job_ttl_seconds)
            with timed(phases, "run"):
                pod, timed_out = self.wait_pod(
                    spec.run_id, spec.image, spec.timeout_seconds, control
                )
            with timed(phases, "collect"):
                control.emit("phase", "collecting output")
                outcome = self.collect(spec.collecting, pod, timed_out)
        finally:
            with timed(phases, "cleanup"):
                self.delete(name)
        outcome.phases = phases
        return outcome

    def cancel(self, run_id: str) -> None:
        self.delete(job_name(run_id))

    def meta(
        self, name: str, kept: dict[str, str], annotations: dict[str, str] | None = None
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "namespace": self.namespace, "labels": kept}
        if annotations:
            meta["annotations"] = annotations
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
            created = self.batch.create_namespaced_job(self.namespace, manifest)
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
                self.core.create_namespaced_secret(self.namespace, secret)
        if control.cancelled.is_set():
            raise Cancelled("the run was cancelled before it started")
        with api_errors("starting the Job"):
            self.batch.patch_namespaced_job(name, self.namespace, {"spec": {"suspend": False}})
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
                self.core.read_namespaced_persistent_volume_claim(claim, self.namespace)
        except NotFound:
            raise VolumeNotFound(
                f"volumes[{key!r}].name: no PersistentVolumeClaim {claim!r} in namespace "
                f"{self.namespace!r}; create it first (POST /volume)",
                field=f"volumes[{key!r}].name",
            ) from None

    def wait_pod(
        self,
        run_id: str,
        image: str,
        timeout: float,
        control: RunControl,
        *,
        until_started: bool = False,
    ) -> tuple[Any, bool]:
        return self.pods.wait(run_id, image, timeout, control, until_started=until_started)

    def collect(self, collect: CollectSpec, pod: Any, timed_out: bool) -> Outcome:
        return self.pods.collect(collect, pod, timed_out)

    def delete(self, name: str) -> None:
        """The Job with its pods; its Secrets go with it, and are deleted here too."""
        for delete, target in (
            (self.batch.delete_namespaced_job, name),
            (self.core.delete_namespaced_secret, f"{name}-content"),
            (self.core.delete_namespaced_secret, f"{name}-pull"),
        ):
            try:
                with api_errors(f"deleting {target}"):
                    delete(target, self.namespace, propagation_policy=BACKGROUND)
            except NotFound:
                pass  # already gone, or never made

    # ---- async runs (kubernetes_runs) ----------------------------------------------------

    def launch(self, spec: RunSpec, control: RunControl, idempotency_key: str | None) -> None:
        _inline_content_only(control.uploads)
        self.jobs.launch(spec, control, idempotency_key)

    def wait_run(self, run_id: str) -> None:
        self.jobs.wait(run_id)

    def find_runs(
        self, *, tenant: str | None, run_id: str | None, idempotency_key: str | None
    ) -> list[RunRecord]:
        return self.jobs.find(tenant, run_id, idempotency_key)

    def run_output(self, run_id: str, *, follow: bool) -> OutputStream:
        return self.jobs.output(run_id, follow=follow)

    def collect_run(self, run_id: str) -> Outcome:
        return self.jobs.collect(run_id)

    def run_file(self, run_id: str, path: str) -> tuple[str, Iterator[bytes]]:
        raise Unsupported(
            "returned paths as raw streams are not supported by the Kubernetes backend; read "
            "them from the run's result (GET /runs/{id}), as base64"
        )

    def discard_run(self, run_id: str, record: RunRecord | None = None) -> None:
        self.jobs.discard(run_id, record)

    def record_run(self, record: RunRecord) -> None:
        self.jobs.record(record)

    # ---- volumes, health, listings, reaping ----------------------------------------------

    def create_volume(self, fill: VolumeFill) -> str:
        """A PersistentVolumeClaim (`driver` is its storage class, `driver_opts.size` its
        size, 1Gi by default)."""
        if fill.tar is not None:
            raise Unsupported(
                "content: filling a volume is not available on Kubernetes; create it empty and "
                "write to it from a run",
                field="content",
            )
        try:
            with api_errors("creating the PersistentVolumeClaim"):
                self.core.create_namespaced_persistent_volume_claim(
                    self.namespace, claim(fill, self.settings.instance_id)
                )
        except Conflict:
            if not fill.reuse_existing:
                raise Conflict(
                    f"name: a PersistentVolumeClaim named {fill.name!r} exists; choose another "
                    "name or set reuse_existing: true",
                    field="name",
                ) from None
            return f"volume {fill.name!r} exists"
        return f"volume {fill.name!r} created (PersistentVolumeClaim)"

    def volume_state(self, name: str) -> VolumeState | None:
        """A PersistentVolumeClaim binds no host path the runner can see (that is the
        cluster's storage class's business)."""
        try:
            with api_errors("reading the PersistentVolumeClaim"):
                found = self.core.read_namespaced_persistent_volume_claim(name, self.namespace)
        except NotFound:
            return None
        return VolumeState(tenant=volume_tenant(found.metadata.labels or {}))

    def list_volumes(self, *, tenant: str) -> list[VolumeInfo]:
        return inventory.claims(self.core, self.namespace, tenant)

    def remove_volume(self, name: str) -> None:
        inventory.remove_claim(self.core, self.namespace, name)

    def health(self) -> Health:
        return inventory.health(self.client, self.namespace)

    def list_containers(
        self, *, tenant: str, all_states: bool, managed_only: bool
    ) -> list[ContainerInfo]:
        return inventory.jobs(self.batch, self.namespace, tenant, all_states, managed_only)

    def list_images(self, *, reference: str | None) -> list[ImageInfo]:
        raise Unsupported(
            "listing images is not available on Kubernetes: nodes' image caches are not visible "
            "through the API; use pull_policy 'always' or 'missing'"
        )

    def pull_image(self, spec: PullSpec, control: RunControl) -> ImageInfo:
        raise Unsupported(
            "image: pulling ahead is not available on Kubernetes: each node pulls the images "
            "of its own pods; a run's pull_policy decides when",
            field="image",
        )

    def renew_lease(self) -> None:
        self.lease.renew()

    def _create_lease(self, name: str, kept: dict[str, str]) -> None:
        lease = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": self.meta(name, kept)}
        with api_errors("renewing the runner's lease"):
            self.core.create_namespaced_config_map(self.namespace, lease)

    def reap_orphans(self) -> int:
        """Plain-run Jobs whose runner no longer holds its lease, and Jobs past their deadline;
        run records and leases past theirs. Async runs end by their own deadline and TTL. Jobs
        are listed before leases (see `backends.leases`)."""
        now = time.time()
        selector = f"{MANAGED}=true"
        with api_errors("reaping leftovers"):
            jobs = self.batch.list_namespaced_job(self.namespace, label_selector=selector)
            kept = [
                item
                for role in (RECORD_ROLE, LEASE_ROLE)
                for item in self.core.list_namespaced_config_map(
                    self.namespace, label_selector=f"{selector},{ROLE}={role}"
                ).items
            ]
        live = live_owners((item.metadata.labels or {} for item in kept), now) | {self.lease.owner}
        removed = 0
        for item in jobs.items:
            job = item.metadata.labels or {}
            mine = job.get(ROLE) == RUN_ROLE and abandoned(job, live)
            if mine or past_deadline(job, now):
                self.delete(item.metadata.name)
                removed += 1
        for item in kept:
            if past_deadline(item.metadata.labels or {}, now):
                self._delete_record(item.metadata.name)
                removed += 1
        return removed

    def _delete_record(self, name: str) -> None:
        try:
            with api_errors(f"deleting {name}"):
                self.core.delete_namespaced_config_map(name, self.namespace)
        except NotFound:
            pass


def _inline_content_only(uploads: Arriving | None) -> None:
    """Content parts (multipart requests) stream into the Docker engine's archive API; this
    backend takes content inline only."""
    if uploads is not None:
        raise Unsupported(
            "content parts (multipart/form-data) are not supported by the Kubernetes backend; "
            "send the content as base64 in a JSON request"
        )
