"""The Kubernetes API, as every part of the backend reaches it: one client, made on first use,
and the namespace runs live in."""

from __future__ import annotations

import threading
from typing import Any

import kubernetes
import urllib3
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api
from kubernetes.config.config_exception import ConfigException

from backends.kubernetes.errors import api_errors
from runner.errors import BackendUnavailable, NotFound
from runner.settings import Settings

RETRIES = urllib3.Retry(
    total=5,
    backoff_factor=0.2,
    status_forcelist=(429, 500, 502, 503, 504),
    allowed_methods=frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"}),
    respect_retry_after_header=True,
    raise_on_status=False,
)


class ClusterApi:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.namespace = settings.kube_namespace
        self._lock = threading.Lock()
        self._client: ApiClient | None = None
        self._owner: dict[str, Any] | None = None

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

    def owner_references(self) -> list[dict[str, Any]]:
        """What everything the runner makes in the namespace is owned by (`RUNNER_KUBE_OWNER`),
        read once: the garbage collector deletes it all when that ConfigMap goes."""
        name = self.settings.kube_owner
        if not name:
            return []
        if self._owner is None:  # two threads may both read it: the same answer
            try:
                with api_errors("reading the runner's owner ConfigMap"):
                    found = self.core.read_namespaced_config_map(name, self.namespace)
            except NotFound:
                raise BackendUnavailable(
                    f"RUNNER_KUBE_OWNER names the ConfigMap {name!r}, which namespace "
                    f"{self.namespace!r} does not have; create it, or unset the setting"
                ) from None
            self._owner = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": name,
                "uid": found.metadata.uid,
            }
        return [dict(self._owner)]

    # The client's models make every field Optional; the wire is what the tests check, so
    # the APIs are used untyped here.
    @property
    def batch(self) -> Any:
        return BatchV1Api(self.client)

    @property
    def core(self) -> Any:
        return CoreV1Api(self.client)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = None
