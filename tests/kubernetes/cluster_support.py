"""What the real-cluster tests (`-m cluster`) need besides the runner: the cluster's own client,
waits driven by watches (never sleeps), a TCP proxy in front of the API server that a test can
cut, and the chart's objects applied by hand. Imported by the default suite too (the tests are
collected there, and deselected), so nothing here touches a cluster at import."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

WAIT_SECONDS = 120
IMAGE = os.environ.get("CLUSTER_TEST_IMAGE", "busybox:1.36")
FILES_RUN = {
    "image": IMAGE,
    "command": ["sh", "-c", "cp /in/a.txt /out/b.txt"],
    "volumes": {
        "/in/a.txt:ro": {"type": "file", "content": "cGF5bG9hZAo="},  # "payload\n"
        "/out": {"type": "directory", "response": True},
    },
}


def namespace() -> str:
    return os.environ.get("RUNNER_KUBE_NAMESPACE", "default")


def require_kubeconfig() -> Path:
    import pytest

    path = os.environ.get("KUBECONFIG")
    if not path:
        pytest.fail("-m cluster needs KUBECONFIG pointing at a cluster (see README)", pytrace=False)
    return Path(path)


def core() -> Any:
    """CoreV1Api of the test's own kubeconfig (cluster admin, as kind and k3d give)."""
    from kubernetes import client, config

    config.load_kube_config(config_file=str(require_kubeconfig()))
    return client.CoreV1Api()


def watch_until(list_call: Callable[..., Any], done: Callable[[Any], bool], **query: Any) -> Any:
    """The first object a watch of `list_call` shows for which `done` holds; fails after
    `WAIT_SECONDS`. Starts with a list, so what is already there counts."""
    from kubernetes import watch

    found = list_call(**query)
    for item in found.items:
        if done(item):
            return item
    stream = watch.Watch().stream(
        list_call,
        resource_version=found.metadata.resource_version,
        timeout_seconds=WAIT_SECONDS,
        **query,
    )
    for event in stream:
        if done(event["object"]):
            return event["object"]
    raise AssertionError(f"nothing matched within {WAIT_SECONDS} s: {query}")


@contextlib.contextmanager
def runner_app(**changes: Any) -> Iterator[Any]:
    """A runner (the REST app) on the cluster, of an instance id of its own unless `changes`
    name one. When it stops, no Job or Secret of its runs may be left; what other runners
    (other tests, other copies of the suite) have in the namespace is never looked at."""
    from api_app import create_app
    from runner.settings import Settings
    from tests.helpers import LocalClient

    changes.setdefault("instance_id", f"cluster-{uuid.uuid4().hex[:8]}")
    changes.setdefault("kube_namespace", namespace())
    settings = Settings(backend="kubernetes", **changes)
    with LocalClient(create_app(settings)) as api:
        yield api
    left = left_by(settings.kube_namespace, settings.instance_id)
    assert left == [], f"the runner left behind: {left}"


def left_by(space: str, instance: str) -> list[str]:
    """The Jobs, Secrets and warm pods (not being deleted) a runner of `instance` made in
    `space` that are still there."""
    from kubernetes import client

    from backends.labels import INSTANCE, POOL

    selector = f"{INSTANCE}={instance}"
    batch, api = client.BatchV1Api(core().api_client), core()
    jobs = batch.list_namespaced_job(space, label_selector=selector).items
    secrets = api.list_namespaced_secret(space, label_selector=selector).items
    pods = api.list_namespaced_pod(space, label_selector=f"{selector},{POOL}").items
    return (
        [f"Job {item.metadata.name}" for item in jobs]
        + [f"Secret {item.metadata.name}" for item in secrets]
        + [f"Pod {item.metadata.name}" for item in pods if not item.metadata.deletion_timestamp]
    )


def restart(*daemons: str) -> None:
    """Stop those daemons of the cluster `scripts/cluster.sh` runs (kube-apiserver, kubelet,
    ...) and bring the cluster up again: a fault, as a machine's restart of them is. Skips the
    test on any other cluster, where the suite cannot do that."""
    import pytest

    from tests.helpers import ROOT

    state = Path(os.environ.get("ONEOFF_CLUSTER_STATE", "/var/lib/oneoff-cluster"))
    if require_kubeconfig().resolve() != (state / "admin.kubeconfig").resolve():
        pytest.skip(
            "restarting the cluster's daemons needs the cluster scripts/cluster.sh runs "
            f"(KUBECONFIG={require_kubeconfig()})"
        )
    script = ROOT / "scripts" / "cluster.sh"
    command = ["bash", str(script), "restart", *daemons]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def remove_finished_run(space: str, run_id: str) -> None:
    """A finished async run stays (with its result) for RUNNER_RESULT_TTL_SECONDS, and
    `DELETE /runs/{id}` leaves it: the test removes its Job itself, pods with it."""
    from kubernetes import client

    batch = client.BatchV1Api(core().api_client)
    batch.delete_namespaced_job(f"oneoff-{run_id}", space, propagation_policy="Background")


def remove_record(space: str, run_id: str) -> None:
    """A run that ended without a Job (cancelled, or failed to start) leaves its record (a
    ConfigMap) for RUNNER_RESULT_TTL_SECONDS: the test removes it."""
    core().delete_namespaced_config_map(f"oneoff-{run_id}-record", space)


def wait_for_failed_create(api: Any, space: str, job: str) -> Any:
    """The Job controller's first FailedCreate event for `job`."""
    fields = f"involvedObject.kind=Job,involvedObject.name={job},reason=FailedCreate"
    return watch_until(
        api.list_namespaced_event, lambda event: True, namespace=space, field_selector=fields
    )


def wait_for_running(api: Any, space: str, selector: str) -> Any:
    """The first pod matching `selector` whose run container is running."""

    def running(pod: Any) -> bool:
        statuses = pod.status.container_statuses or []
        return any(s.name == "run" and s.state and s.state.running for s in statuses)

    return watch_until(api.list_namespaced_pod, running, namespace=space, label_selector=selector)


class ApiProxy:
    """A TCP proxy to the API server. `cut()` resets every open connection and refuses new
    ones (each refused attempt sets `refused`) until `restore()`: an API-server blip."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        self.down = False
        self.refused = threading.Event()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        with self.lock:
            self.down, connections, self.open = True, self.open, []
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def restore(self) -> None:
        with self.lock:
            self.down = False

    def close(self) -> None:
        self.cut()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                down = self.down
            if down:
                client.close()
                self.refused.set()
                continue
            upstream = socket.create_connection(self.upstream)
            with self.lock:
                self.open += [client, upstream]
            threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()


def _pipe(one: socket.socket, other: socket.socket) -> None:
    """Bytes both ways (TLS passes through untouched) until either end closes or is cut."""
    peers = {one: other, other: one}
    try:
        while True:
            readable, _, _ = select.select(list(peers), [], [])
            for source in readable:
                data = source.recv(65536)
                if not data:
                    return
                peers[source].sendall(data)
    except (OSError, ValueError):
        return
    finally:
        for end in (one, other):
            with contextlib.suppress(OSError):
                end.close()


@contextlib.contextmanager
def proxied_kubeconfig(directory: Path) -> Iterator[tuple[Path, ApiProxy]]:
    """A copy of the test's kubeconfig whose current cluster is reached through an `ApiProxy`.
    The certificate is still checked against the server's own name (`tls-server-name`)."""
    original = require_kubeconfig()
    config = yaml.safe_load(original.read_text())
    context_name = config["current-context"]
    context = next(c for c in config["contexts"] if c["name"] == context_name)["context"]
    cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])["cluster"]
    user = next(u for u in config["users"] if u["name"] == context["user"])["user"]
    for entry, key in ((cluster, "certificate-authority"), (user, "client-certificate")):
        for name in (key, "client-key"):
            if name in entry:  # files named relative to the original kubeconfig
                entry[name] = str(original.parent / entry[name])
    server = urlsplit(cluster["server"])
    proxy = ApiProxy((server.hostname or "127.0.0.1", server.port or 443))
    if server.hostname and not server.hostname.replace(".", "").isdigit():
        cluster.setdefault("tls-server-name", server.hostname)
    cluster["server"] = f"{server.scheme}://127.0.0.1:{proxy.port}{server.path}"
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    try:
        yield path, proxy
    finally:
        proxy.close()


def labelled_namespace(api: Any, name: str, labels: dict[str, str]) -> None:
    """A namespace of the test's own; its default service account comes a moment later (the
    runner waits for it: a FailedCreate that clears)."""
    api.create_namespace({"metadata": {"name": name, "labels": labels}})


def delete_namespace(api: Any, name: str) -> None:
    from kubernetes.client.exceptions import ApiException

    with contextlib.suppress(ApiException):
        api.delete_namespace(name)


# ---- the chart's NetworkPolicy, applied and probed -----------------------------------------

PROBE = """
check() {
  if [ "$TARGET" = dns ]; then nslookup kubernetes.default.svc.cluster.local >/dev/null 2>&1
  else out=$(wget -T 3 -O /dev/null "http://$TARGET/" 2>&1) || echo "$out" | grep -q "error"
  fi
}
for attempt in $(seq 15); do
  if check; then now=open; else now=blocked; fi
  [ "$now" = "$EXPECT" ] && break
  sleep 1
done
echo "result=$now"
"""


def probe(api: Any, target: str, *, expect: str) -> str:
    """ "open" or "blocked": whether a run pod reaches `target` (`dns`, or host:port over TCP).
    A policy takes a moment to apply, so the pod tries for a while until it sees `expect`."""
    body = {
        "image": IMAGE,
        "command": ["sh", "-c", PROBE],
        "env_vars": {"TARGET": target, "EXPECT": expect},
        "timeout_seconds": 300,
    }
    result = api.post("/run", json=body).json()
    return str(result["stdout"].strip().splitlines()[-1].removeprefix("result="))


def api_endpoint(api: Any) -> str:
    """host:port of the API server as pods reach it: a node's private address."""
    from kubernetes import client

    slices = client.DiscoveryV1Api(api.api_client).list_namespaced_endpoint_slice(
        "default", label_selector="kubernetes.io/service-name=kubernetes"
    )
    found = slices.items[0]
    return f"{found.endpoints[0].addresses[0]}:{found.ports[0].port}"


def apply_policy(space: str, egress: dict[str, Any] | None) -> None:
    """The chart's NetworkPolicy for run pods in `space`, rendered by Helm's engine with
    `networkPolicy.egress` set to `egress` (None: the chart's default, no egress)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from tests.helm.test_chart import find, objects

    values: dict[str, Any] = {"runs": {"namespace": space}}
    if egress is not None:
        values["networkPolicy"] = {"egress": egress}
    (policy,) = find(objects(values), "NetworkPolicy")
    networking = client.NetworkingV1Api(core().api_client)
    name = policy["metadata"]["name"]
    try:
        networking.replace_namespaced_network_policy(name, space, policy)
    except ApiException as exc:
        if exc.status != 404:
            raise
        networking.create_namespaced_network_policy(space, policy)
