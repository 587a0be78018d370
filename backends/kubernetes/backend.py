"""The Kubernetes backend: one run is one `batch/v1` Job, through the official `kubernetes` client.

A facade: the synchronous run is here, async runs go to `JobRuns` (`runs`), both over one Job
core (`Jobs`); volumes (PersistentVolumeClaims) and listings to `inventory`.

One run: the Job is created suspended → the Secrets it needs (content, pull credentials) are
created owned by it → it is resumed → its pod is watched (never polled) until it ends, or a
container cannot start (an image that cannot be pulled is an error at once, not a hang) → the
run's log and returned paths are read → the Job is deleted with its pods and Secrets, in
`finally`. Pod logs merge stdout and stderr; results say so (`streams_merged`).
"""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Iterator

from backends.kubernetes import inventory
from backends.kubernetes.api import ClusterApi
from backends.kubernetes.errors import api_errors
from backends.kubernetes.jobs import Jobs
from backends.kubernetes.manifests import claim, job_name
from backends.kubernetes.runs import JobRuns
from backends.kubernetes.warm import WarmPods, WarmTake
from backends.labels import (
    LEASE_ROLE,
    MANAGED,
    POOL,
    RECORD_ROLE,
    ROLE,
    RUN_ROLE,
    run_labels,
    volume_tenant,
)
from backends.leases import abandoned, live_owners, past_deadline
from runner.backend import OutputStream
from runner.engine_models import ContainerInfo, Health, ImageInfo, VolumeEntry, VolumeInfo
from runner.errors import Conflict, NotFound, RunnerError, Unreturnable, Unsupported
from runner.private_images import Grants
from runner.settings import Settings
from runner.spec import (
    Arriving,
    Outcome,
    PullSpec,
    RunControl,
    RunRecord,
    RunSpec,
    VolumeFill,
    VolumeState,
    into_volumes,
    timed,
)

log = logging.getLogger("oneoff_runner.kubernetes")


class KubernetesBackend:
    name = "kubernetes"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.namespace = settings.kube_namespace
        self.api = ClusterApi(settings)
        self.jobs = Jobs(self.api)
        self.runs = JobRuns(self.jobs)
        self.warm = WarmPods(self.jobs)

    def close(self) -> None:
        self.warm.close()
        try:
            self.jobs.lease.release()
        except RunnerError as exc:
            log.warning("the runner's lease could not be released (it expires): %s", exc.message)
        self.api.close()

    # ---- runs -------------------------------------------------------------------------------

    def run(self, spec: RunSpec, control: RunControl) -> Outcome:
        _inline_content_only(control.uploads)
        _no_content_into_volumes(spec)
        jobs, phases = self.jobs, dict[str, float]()
        took = dict[str, float]()  # "warm" is a phase of the runs that took a warm pod only
        with timed(took, "warm"):
            taken = self.warm.take(spec, control)
        if taken is not None:
            return self._run_warm(spec, control, taken, took)
        name = job_name(spec.run_id)
        try:
            with timed(phases, "create"):
                jobs.lease.hold()
                instance = self.settings.instance_id
                kept = run_labels(
                    spec.run_id, instance, RUN_ROLE, spec.tenant, spec.timeout_seconds
                )
                meta = jobs.meta(name, {**kept, **jobs.lease.labels()})
                jobs.create_job(spec, control, meta, self.settings.kube_job_ttl_seconds)
            with timed(phases, "run"):
                pod, timed_out = jobs.pods.wait(
                    spec.run_id, spec.image, spec.timeout_seconds, control
                )
            with timed(phases, "collect"):
                control.emit("phase", "collecting output")
                outcome = jobs.pods.collect(spec.collecting, pod, timed_out)
        finally:
            with timed(phases, "cleanup"):
                jobs.delete(name)
        outcome.phases = phases
        return outcome

    def _run_warm(
        self, spec: RunSpec, control: RunControl, taken: WarmTake, phases: dict[str, float]
    ) -> Outcome:
        """A run in a warm pod (`warm`), followed and read as a Job's pod, then deleted."""
        pods = self.jobs.pods
        try:
            with timed(phases, "run"):
                pod, timed_out = pods.wait(
                    spec.run_id,
                    spec.image,
                    spec.timeout_seconds,
                    control,
                    command_started=taken.started,
                )
            with timed(phases, "collect"):
                control.emit("phase", "collecting output")
                outcome = pods.collect(spec.collecting, pod, timed_out, taken.marker)
        finally:
            with timed(phases, "cleanup"):
                self.warm.release(spec.run_id)
        outcome.phases = phases
        return outcome

    def cancel(self, run_id: str) -> None:
        if not self.warm.kill(run_id):
            self.jobs.delete(job_name(run_id))

    def launch(self, spec: RunSpec, control: RunControl, idempotency_key: str | None) -> None:
        _inline_content_only(control.uploads)
        _no_content_into_volumes(spec)
        self.runs.launch(spec, control, idempotency_key)

    def wait_run(self, run_id: str) -> None:
        self.runs.wait(run_id)

    def settle_run(self, run_id: str, timeout: float) -> None:
        """Nothing to wait for: a finished run's Job holds its result until it expires."""

    def find_runs(
        self, *, tenant: str | None, run_id: str | None, idempotency_key: str | None
    ) -> list[RunRecord]:
        return self.runs.find(tenant, run_id, idempotency_key)

    def run_output(self, run_id: str, *, follow: bool) -> OutputStream:
        return self.runs.output(run_id, follow=follow)

    def collect_run(self, run_id: str) -> Outcome:
        return self.runs.collect(run_id)

    def run_file(self, run_id: str, path: str) -> tuple[str, Iterator[bytes]]:
        """Read again from the run's collect log, which its Job keeps until the run is
        forgotten (so within the Kubernetes bound on returned content, in memory)."""
        outcome = self.runs.collect(run_id)
        if path in outcome.unreturned:
            raise Unreturnable(outcome.unreturned[path][1], field="path")
        if path not in outcome.returned:
            paths = ", ".join(outcome.returned) or "nothing"
            raise NotFound(
                f"path: {path!r} is not a `response: true` path of run {run_id!r} (it "
                f"returns: {paths})",
                field="path",
            )
        kind, data = outcome.returned[path]
        return kind, iter([data if kind == "file" else gzip.decompress(data)])

    def discard_run(self, run_id: str, record: RunRecord | None = None) -> None:
        self.runs.discard(run_id, record)

    def forget_run(self, run_id: str) -> None:
        self.runs.forget(run_id)

    def record_run(self, record: RunRecord) -> None:
        self.runs.record(record)

    def mark_delivered(self, run_id: str, tenant: str) -> None:
        self.runs.mark_delivered(run_id)

    # ---- volumes, health, listings, reaping ----------------------------------------------

    def create_volume(self, fill: VolumeFill) -> str:
        """A PersistentVolumeClaim (`driver` is its storage class, `driver_opts.size` its
        size, 1Gi by default)."""
        if fill.expires_at is not None:
            raise Unsupported(
                "ttl_seconds: volumes do not expire on Kubernetes (PersistentVolumeClaims are "
                "kept until removed); leave it out",
                field="ttl_seconds",
            )
        if fill.tar is not None:
            raise Unsupported(
                "content: filling a volume is not available on Kubernetes; create it empty and "
                "write to it from a run",
                field="content",
            )
        try:
            with api_errors("creating the PersistentVolumeClaim"):
                self.api.core.create_namespaced_persistent_volume_claim(
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
        core = self.api.core
        try:
            with api_errors("reading the PersistentVolumeClaim"):
                found = core.read_namespaced_persistent_volume_claim(name, self.namespace)
        except NotFound:
            return None
        return VolumeState(tenant=volume_tenant(found.metadata.labels or {}))

    def list_volumes(self, *, tenant: str) -> list[VolumeInfo]:
        return inventory.claims(self.api.core, self.namespace, tenant)

    def remove_volume(self, name: str) -> None:
        inventory.remove_claim(self.api.core, self.namespace, name)

    def volume_files(self, name: str, tenant: str, path: str) -> tuple[int, list[VolumeEntry]]:
        raise _no_volume_files()

    def read_volume_file(self, name: str, tenant: str, path: str, max_bytes: int) -> bytes:
        raise _no_volume_files()

    def write_volume_file(self, name: str, tenant: str, path: str, data: bytes, mode: int) -> int:
        raise _no_volume_files()

    def health(self) -> Health:
        found = inventory.health(self.api.client, self.namespace, bool(self.warm.entries))
        self.api.owner_references()  # the ConfigMap RUNNER_KUBE_OWNER names is there
        return found

    def list_containers(
        self, *, tenant: str, all_states: bool, managed_only: bool
    ) -> list[ContainerInfo]:
        api, space = self.api, self.namespace
        found = inventory.jobs(api.batch, space, tenant, all_states, managed_only)
        return found + inventory.warm_runs(api.core, space, tenant, all_states)

    def list_images(self, *, reference: str | None) -> list[ImageInfo]:
        raise Unsupported(
            "listing images is not available on Kubernetes: nodes' image caches are not visible "
            "through the API; use pull_policy 'always' or 'missing'"
        )

    def image_grants(self) -> Grants:
        """None kept: each node's kubelet judges its own image cache (docs/kubernetes.md)."""
        return {}

    def pull_image(self, spec: PullSpec, control: RunControl) -> ImageInfo:
        raise Unsupported(
            "image: pulling ahead is not available on Kubernetes: each node pulls the images "
            "of its own pods; a run's pull_policy decides when",
            field="image",
        )

    def renew_lease(self) -> None:
        """The lease (at startup, then periodically); the warm pool starts filling then."""
        self.jobs.lease.renew()
        self.warm.start()

    def reap_orphans(self) -> int:
        """Plain-run Jobs and warm pods whose runner no longer holds its lease, and those past
        their deadline; run records and leases past theirs. Async runs end by their own deadline
        and TTL. Jobs and pods are listed before leases (see `backends.leases`)."""
        now, selector = time.time(), f"{MANAGED}=true"
        batch, core = self.api.batch, self.api.core
        with api_errors("reaping leftovers"):
            jobs = batch.list_namespaced_job(self.namespace, label_selector=selector)
            warm = core.list_namespaced_pod(self.namespace, label_selector=f"{selector},{POOL}")
            kept = [
                item
                for role in (RECORD_ROLE, LEASE_ROLE)
                for item in core.list_namespaced_config_map(
                    self.namespace, label_selector=f"{selector},{ROLE}={role}"
                ).items
            ]
        live = live_owners((item.metadata.labels or {} for item in kept), now)
        live.add(self.jobs.lease.owner)
        removed = 0
        for item in jobs.items:
            job = item.metadata.labels or {}
            mine = job.get(ROLE) == RUN_ROLE and abandoned(job, live)
            if mine or past_deadline(job, now):
                self.jobs.delete(item.metadata.name)
                removed += 1
        for item in warm.items:
            labels = item.metadata.labels or {}
            if abandoned(labels, live) or past_deadline(labels, now):
                self.warm.delete(item.metadata.name, item.metadata.resource_version)
                removed += 1
        for item in kept:
            if past_deadline(item.metadata.labels or {}, now):
                self.jobs.delete_config_map(item.metadata.name)
                removed += 1
        return removed


def _no_volume_files() -> Unsupported:
    return Unsupported(
        "name: a volume's files are read and written without a run on the Docker backend only; "
        "on Kubernetes, mount the volume (a PersistentVolumeClaim) in a run and use its files "
        "there"
    )


def _no_content_into_volumes(spec: RunSpec) -> None:
    """Content under a writable volume's mount would be mounted over the claim, for that run
    only (the Docker backend writes it into the volume): refused rather than silently lost."""
    for index in into_volumes(spec):
        mount = spec.mounts[index]
        field = f"volumes[{mount.key!r}]"
        raise Unsupported(
            f"{field}: content under a volume's mount is not written into the volume on "
            "Kubernetes; write it from a run (e.g. a command that writes the file) or mount it "
            "elsewhere",
            field=field,
        )


def _inline_content_only(uploads: Arriving | None) -> None:
    """Content parts (multipart requests) stream into the Docker engine's archive API; this
    backend takes content inline only."""
    if uploads is not None:
        raise Unsupported(
            "content parts (multipart/form-data) are not supported by the Kubernetes backend; "
            "send the content as base64 in a JSON request"
        )
