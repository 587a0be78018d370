"""A fake Kubernetes API server: the real HTTP wire protocol, for the real `kubernetes` client.

It keeps objects in memory, serves lists, label selectors, merge patches, deletes (pods and
owned Secrets go with their Job), watches (chunked JSON lines) and pod logs, answers
SelfSubjectAccessReviews from a set of granted permissions, and checks every object a client
sends against the real Kubernetes schemas (`kubernetes-validate`): an invalid one is refused with
422, as a real server would, and kept in `invalid` for the test to see.

Pods are played by a `Script` the test gives: the states the pod goes through and what its
containers print. When the pod has the runner's init container, the fake does what the kubelet
would: the Secret is "mounted", `pod-helper unpack` really runs on it, the script's `program`
acts on the unpacked paths as the user's command would, and `pod-helper collect` really writes
the collect sidecar's log.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import json
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import kubernetes_validate

from backends.kubernetes import pod_helper

SCHEMA_VERSIONS = ("1.29.0", "1.37.0")  # the oldest with native sidecars, and the newest
STEP_SECONDS = 0.02


@dataclass
class Script:
    """How a run pod behaves: `states` are pod statuses applied in order (see the helpers
    below); `logs` what each container printed; `program(root)` writes into the unpacked
    content paths (`root/<index>`) as the user's command would; `hold` keeps the pod running
    until it is deleted."""

    states: list[dict[str, Any]]
    logs: dict[str, bytes] = field(default_factory=dict)
    program: Callable[[Path], None] | None = None
    hold: bool = False
    job_condition: dict[str, str] | None = None


def _status(name: str, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "state": state,
        "ready": False,
        "restartCount": 0,
        "image": "image",
        "imageID": "",
    }


def running() -> dict[str, Any]:
    return {"phase": "Running", "containerStatuses": [_status("run", {"running": {}})]}


def finished(exit_code: int, reason: str | None = None) -> dict[str, Any]:
    terminated = {
        "exitCode": exit_code,
        "reason": reason or ("Completed" if not exit_code else "Error"),
    }
    phase = "Succeeded" if exit_code == 0 else "Failed"
    return {"phase": phase, "containerStatuses": [_status("run", {"terminated": terminated})]}


def waiting(reason: str, message: str) -> dict[str, Any]:
    state = {"waiting": {"reason": reason, "message": message}}
    return {"phase": "Pending", "containerStatuses": [_status("run", state)]}


def succeeds(output: bytes = b"", program: Callable[[Path], None] | None = None) -> Script:
    return Script([running(), finished(0)], {"run": output}, program)


def fails(exit_code: int, output: bytes = b"", reason: str | None = None) -> Script:
    return Script([running(), finished(exit_code, reason)], {"run": output})


def deadline_exceeded(output: bytes = b"") -> Script:
    killed = finished(137, "Error")
    killed["reason"] = "DeadlineExceeded"
    condition = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}
    return Script([running(), killed], {"run": output}, job_condition=condition)


def cannot_pull(reason: str, message: str) -> Script:
    return Script([waiting("ErrImagePull", message), waiting(reason, message)], hold=True)


def runs_until_deleted(output: bytes = b"") -> Script:
    return Script([running()], {"run": output}, hold=True)


VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0-fake",
    "gitCommit": "0" * 40,
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.24.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

RESOURCES = {
    ("apis/batch/v1", "jobs"): "jobs",
    ("api/v1", "secrets"): "secrets",
    ("api/v1", "pods"): "pods",
    ("api/v1", "persistentvolumeclaims"): "persistentvolumeclaims",
}


class FakeKubernetes:
    def __init__(self, script: Callable[[dict[str, Any]], Script] | None = None) -> None:
        self.script = script or (lambda job: succeeds())
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.received: list[dict[str, Any]] = []
        self.invalid: list[str] = []
        self.granted: set[tuple[str, str, str]] | None = None  # None: everything
        self.calls: set[tuple[str, str, str]] = set()  # (group, resource, verb) clients used
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.changed = threading.Condition()
        self.closed = False
        self._version = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeKubernetes:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.changed:
            self.closed = True
            self.changed.notify_all()
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, directory: Path) -> Path:
        path = directory / "kubeconfig"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "runner", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "runner"}}],
            "current-context": "fake",
        }
        path.write_text(json.dumps(config))
        return path

    def named(self, resource: str) -> list[str]:
        with self.changed:
            return sorted(name for (kind, _, name) in self.objects if kind == resource)

    # ---- object store ------------------------------------------------------------------

    def create(self, resource: str, namespace: str, body: dict[str, Any]) -> tuple[int, Any]:
        self.received.append(copy.deepcopy(body))
        problem = _invalid(body)
        if problem:
            self.invalid.append(problem)
            return 422, _status_body(422, "Invalid", problem)
        name = body["metadata"]["name"]
        if (resource, namespace, name) in self.objects:
            return 409, _status_body(409, "AlreadyExists", f'{resource} "{name}" already exists')
        stored = copy.deepcopy(body)
        stored["metadata"].update(
            namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=_now()
        )
        if resource == "jobs":
            stored["status"] = {}
        self._put(resource, namespace, stored, "ADDED")
        if resource == "jobs" and not stored["spec"].get("suspend"):
            self._start_pod(stored)
        return 201, stored

    def patch(
        self, resource: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> tuple[int, Any]:
        current = self.objects.get((resource, namespace, name))
        if current is None:
            return 404, _status_body(404, "NotFound", f'{resource} "{name}" not found')
        was_suspended = current.get("spec", {}).get("suspend")
        updated = _merged(copy.deepcopy(current), patch)
        self._put(resource, namespace, updated, "MODIFIED")
        if resource == "jobs" and was_suspended and not updated["spec"].get("suspend"):
            self._start_pod(updated)
        return 200, updated

    def delete(self, resource: str, namespace: str, name: str) -> tuple[int, Any]:
        with self.changed:
            found = self.objects.pop((resource, namespace, name), None)
        if found is None:
            return 404, _status_body(404, "NotFound", f'{resource} "{name}" not found')
        self._emit("DELETED", resource, found)
        if resource == "jobs":
            uid = found["metadata"]["uid"]
            for (kind, space, other), item in list(self.objects.items()):
                owners = item["metadata"].get("ownerReferences") or []
                owned = any(owner.get("uid") == uid for owner in owners)
                if space == namespace and (
                    owned or item["metadata"].get("labels", {}).get("job-name") == name
                ):
                    self.delete(kind, space, other)
        return 200, _status_body(200, "Success", "deleted")

    def list(self, resource: str, namespace: str, selector: str | None) -> list[dict[str, Any]]:
        with self.changed:
            return [
                copy.deepcopy(item)
                for (kind, space, _), item in self.objects.items()
                if kind == resource and space == namespace and _matches(item, selector)
            ]

    def _put(self, resource: str, namespace: str, item: dict[str, Any], kind: str) -> None:
        with self.changed:
            self._version += 1
            item["metadata"]["resourceVersion"] = str(self._version)
            self.objects[(resource, namespace, item["metadata"]["name"])] = item
        self._emit(kind, resource, item)

    def _emit(self, kind: str, resource: str, item: dict[str, Any]) -> None:
        if resource != "pods":
            return
        with self.changed:
            self.events.append((kind, copy.deepcopy(item)))
            self.changed.notify_all()

    # ---- the pod's life --------------------------------------------------------------------

    def _start_pod(self, job: dict[str, Any]) -> None:
        threading.Thread(target=self._play, args=(job, self.script(job)), daemon=True).start()

    def _play(self, job: dict[str, Any], script: Script) -> None:
        namespace = job["metadata"]["namespace"]
        template = job["spec"]["template"]
        name = f"{job['metadata']['name']}-{uuid.uuid4().hex[:5]}"
        labels = {**template["metadata"]["labels"], "job-name": job["metadata"]["name"]}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": copy.deepcopy(template["spec"]),
            "status": {"phase": "Pending"},
        }
        self._put("pods", namespace, pod, "ADDED")
        logs = dict(script.logs)
        logs.update(self._kubelet(job, pod, script))
        pod["logs"] = {key: value.decode("latin-1") for key, value in logs.items()}
        for state in script.states:
            if (("pods", namespace, name)) not in self.objects:
                return
            pod = copy.deepcopy(self.objects[("pods", namespace, name)])
            pod["status"] = state
            self._put("pods", namespace, pod, "MODIFIED")
            with self.changed:
                self.changed.wait(STEP_SECONDS)
        if script.job_condition is not None:
            self.patch(
                "jobs",
                namespace,
                job["metadata"]["name"],
                {"status": {"conditions": [script.job_condition]}},
            )

    def _kubelet(
        self, job: dict[str, Any], pod: dict[str, Any], script: Script
    ) -> dict[str, bytes]:
        """What the runner's helper containers do in a real pod, really done."""
        helpers = {c["name"]: c for c in pod["spec"].get("initContainers", [])}
        if "unpack" not in helpers:
            return {}
        steps = json.loads(helpers["unpack"]["command"][-1])
        with tempfile.TemporaryDirectory() as scratch:
            source, root = Path(scratch, "input"), Path(scratch, "content")
            source.mkdir()
            secret_volume = next((v for v in pod["spec"]["volumes"] if "secret" in v), None)
            if secret_volume is not None:
                key = (
                    "secrets",
                    pod["metadata"]["namespace"],
                    secret_volume["secret"]["secretName"],
                )
                for item, value in self.objects[key]["data"].items():
                    (source / item).write_bytes(base64.b64decode(value))
            pod_helper.unpack(steps, source, root)
            if script.program is not None:
                script.program(root)
            if "collect" not in helpers:
                return {}
            limit = int(helpers["collect"]["command"][-1])
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                pod_helper.collect(steps, root, limit)
            return {"collect": out.getvalue().encode()}


def _invalid(body: dict[str, Any]) -> str | None:
    for version in SCHEMA_VERSIONS:
        try:
            kubernetes_validate.validate(body, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            return f"{body.get('kind')} against {version}: {exc.message} at {list(exc.path)}"
    return None


def _matches(item: dict[str, Any], selector: str | None) -> bool:
    labels = item["metadata"].get("labels") or {}
    for term in (selector or "").split(","):
        if term:
            key, _, value = term.partition("=")
            if labels.get(key) != value:
                return False
    return True


def _merged(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merged(target[key], value)
        else:
            target[key] = value
    return target


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _handler(fake: FakeKubernetes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PATCH(self) -> None:
            self._route("PATCH")

        def do_DELETE(self) -> None:
            self._route("DELETE")

        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            parts = url.path.strip("/").split("/")
            body = self._body() if method in ("POST", "PATCH") else None
            if url.path.rstrip("/") == "/version":
                return self._send(200, VERSION)
            if url.path.endswith("/selfsubjectaccessreviews"):
                return self._send(201, _review(fake, body or {}))
            prefix = "/".join(parts[:2]) if parts[0] == "api" else "/".join(parts[:3])
            rest = parts[2:] if parts[0] == "api" else parts[3:]
            if len(rest) < 3 or rest[0] != "namespaces":
                return self._send(404, _status_body(404, "NotFound", url.path))
            namespace, resource, name = rest[1], rest[2], (rest[3] if len(rest) > 3 else None)
            if (prefix, resource) not in RESOURCES:
                return self._send(404, _status_body(404, "NotFound", url.path))
            fake.calls.add(_permission(prefix, resource, name, rest, method, query))
            if len(rest) == 5 and rest[4] == "log":
                return self._log(namespace, str(name), query)
            if name is None and method == "GET" and query.get("watch") in ("true", "True", "1"):
                return self._watch(namespace, query)
            if name is None and method == "GET":
                items = fake.list(resource, namespace, query.get("labelSelector"))
                return self._send(
                    200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items}
                )
            if name is None and method == "POST":
                return self._send(*fake.create(resource, namespace, body or {}))
            if method == "GET":
                found = fake.objects.get((resource, namespace, str(name)))
                if found is None:
                    return self._send(
                        404, _status_body(404, "NotFound", f'{resource} "{name}" not found')
                    )
                return self._send(200, found)
            if method == "PATCH":
                return self._send(*fake.patch(resource, namespace, str(name), body or {}))
            return self._send(*fake.delete(resource, namespace, str(name)))

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def _send(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _log(self, namespace: str, name: str, query: dict[str, str]) -> None:
            pod = fake.objects.get(("pods", namespace, name))
            if pod is None:
                return self._send(404, _status_body(404, "NotFound", f'pods "{name}" not found'))
            text = pod.get("logs", {}).get(query.get("container", "run"), "").encode("latin-1")
            if "limitBytes" in query:
                text = text[: int(query["limitBytes"])]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def _watch(self, namespace: str, query: dict[str, str]) -> None:
            selector = query.get("labelSelector")
            deadline = threading.Event()
            timer = threading.Timer(float(query.get("timeoutSeconds", "30")), deadline.set)
            timer.start()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            with fake.changed:
                seen = len(fake.events)
                initial = fake.list("pods", namespace, selector)
            try:
                for pod in initial:
                    self._chunk({"type": "ADDED", "object": _public(pod)})
                while not deadline.is_set() and not fake.closed:
                    with fake.changed:
                        fake.changed.wait(0.05)
                        new, seen = fake.events[seen:], len(fake.events)
                    for kind, pod in new:
                        if pod["metadata"]["namespace"] == namespace and _matches(pod, selector):
                            self._chunk({"type": kind, "object": _public(pod)})
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                timer.cancel()

        def _chunk(self, event: dict[str, Any]) -> None:
            data = json.dumps(event).encode() + b"\n"
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return Handler


def _permission(
    prefix: str,
    resource: str,
    name: str | None,
    rest: list[str],
    method: str,
    query: dict[str, str],
) -> tuple[str, str, str]:
    """The RBAC (group, resource, verb) a request needs."""
    group = "" if prefix == "api/v1" else prefix.split("/")[1]
    if len(rest) == 5 and rest[4] == "log":
        return group, f"{resource}/log", "get"
    if method == "GET" and name is None:
        return group, resource, "watch" if query.get("watch") in ("true", "True", "1") else "list"
    verbs = {"GET": "get", "POST": "create", "PATCH": "patch", "DELETE": "delete"}
    return group, resource, verbs[method]


def _public(pod: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in pod.items() if key != "logs"}


def _review(fake: FakeKubernetes, body: dict[str, Any]) -> dict[str, Any]:
    problem = _invalid(
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", **body}
    )
    if problem:
        fake.invalid.append(problem)
    attributes = body.get("spec", {}).get("resourceAttributes", {})
    resource = attributes.get("resource", "")
    if attributes.get("subresource"):
        resource += "/" + attributes["subresource"]
    wanted = (attributes.get("group", ""), resource, attributes.get("verb", ""))
    allowed = fake.granted is None or wanted in fake.granted
    return {
        **body,
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "status": {"allowed": allowed},
    }
