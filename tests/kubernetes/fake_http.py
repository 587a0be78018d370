"""The fake API server's HTTP side: routing, RBAC bookkeeping, watches and pod logs.

Watches behave as the real server's: without a resourceVersion they start with ADDED for what
exists; with one they send what changed after it, or an ERROR event with a 410 Status when it
is older than the history kept; `allowWatchBookmarks` adds BOOKMARK events carrying the
current resourceVersion; `timeoutSeconds` ends them. Pod logs: `limitBytes`, the newest log
file only, `follow` until the container ends, and a 400 with the kubelet's words for a container
that has not started (waiting, or no status yet).
"""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

from tests.kubernetes.fake_objects import fields_match, invalid, matches, status_body

if TYPE_CHECKING:
    from tests.kubernetes.fake_api import FakeKubernetes

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
    ("apis/batch/v1", "jobs"),
    ("api/v1", "secrets"),
    ("api/v1", "configmaps"),
    ("api/v1", "pods"),
    ("api/v1", "events"),
    ("api/v1", "persistentvolumeclaims"),
}
BOOKMARK_SECONDS = 0.2
TRUE = ("true", "True", "1")


def handler(fake: FakeKubernetes) -> type[BaseHTTPRequestHandler]:
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
            body = self._body() if method in ("POST", "PATCH", "DELETE") else None
            if url.path.rstrip("/") == "/version":
                return self._send(200, VERSION)
            if url.path.endswith("/selfsubjectaccessreviews"):
                return self._send(201, _review(fake, body or {}))
            prefix = "/".join(parts[:2]) if parts[0] == "api" else "/".join(parts[:3])
            rest = parts[2:] if parts[0] == "api" else parts[3:]
            if len(rest) < 3 or rest[0] != "namespaces" or (prefix, rest[2]) not in RESOURCES:
                return self._send(404, status_body(404, "NotFound", url.path))
            with fake.changed:
                failing, fake.failures = fake.failures > 0, max(0, fake.failures - 1)
                if method == "PATCH" and rest[2] == "pods" and fake.refused_patches > 0:
                    failing, fake.refused_patches = True, fake.refused_patches - 1
            if failing:
                return self._send(503, status_body(503, "ServiceUnavailable", "restarting"))
            namespace, resource, name = rest[1], rest[2], (rest[3] if len(rest) > 3 else None)
            fake.calls.add(_permission(prefix, resource, name, rest, method, query))
            if len(rest) == 5 and rest[4] == "log":
                return self._log(namespace, str(name), query)
            if name is None and method == "GET":
                if query.get("watch") in TRUE:
                    return self._watch(resource, namespace, query)
                return self._list(resource, namespace, query)
            if name is None and method == "POST":
                return self._send(*fake.create(resource, namespace, body or {}))
            if method == "GET":
                found = fake.get(resource, namespace, str(name))
                if found is None:
                    return self._send(
                        404, status_body(404, "NotFound", f'{resource} "{name}" not found')
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

        def _list(self, resource: str, namespace: str, query: dict[str, str]) -> None:
            with fake.changed:
                version = fake.version
                items = fake.list(
                    resource, namespace, query.get("labelSelector"), query.get("fieldSelector")
                )
            meta = {"resourceVersion": str(version)}
            self._send(200, {"kind": "List", "apiVersion": "v1", "metadata": meta, "items": items})

        def _start_stream(self, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _event(self, kind: str, item: dict[str, Any]) -> None:
            self._chunk(json.dumps({"type": kind, "object": item}).encode() + b"\n")

        def _watch(self, resource: str, namespace: str, query: dict[str, str]) -> None:
            fake.watch_queries.append(dict(query))
            selector, fields = query.get("labelSelector"), query.get("fieldSelector")
            until = time.monotonic() + float(query.get("timeoutSeconds", "1800"))
            bookmarks = query.get("allowWatchBookmarks") in TRUE
            since = query.get("resourceVersion") or "0"
            self._start_stream("application/json")
            with fake.changed:
                fake.watches.add(self.connection)
                expired = since != "0" and int(since) < fake.compacted
                seen = fake.version if since == "0" else int(since)
                initial = fake.list(resource, namespace, selector, fields) if since == "0" else []
            try:
                if expired:
                    gone = status_body(410, "Expired", f"too old resource version: {since}")
                    fake.expired_watches += 1
                    self._event("ERROR", gone)
                    return self.wfile.write(b"0\r\n\r\n") and None
                for item in initial:
                    self._event("ADDED", item)
                next_bookmark = time.monotonic() + BOOKMARK_SECONDS
                while time.monotonic() < until and not fake.closed:
                    with fake.changed:
                        fake.changed.wait(min(0.05, max(0.0, until - time.monotonic())))
                        new = [entry for entry in fake.history if entry[0] > seen]
                        seen = fake.version
                    for _, kind, kept, item in new:
                        if (kept, item["metadata"]["namespace"]) == (resource, namespace) and (
                            _matches(item, selector, fields)
                        ):
                            self._event(kind, item)
                    if bookmarks and time.monotonic() >= next_bookmark:
                        meta = {"resourceVersion": str(seen)}
                        self._event(
                            "BOOKMARK", {"kind": "Pod", "apiVersion": "v1", "metadata": meta}
                        )
                        next_bookmark = time.monotonic() + BOOKMARK_SECONDS
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the client went away, or the test dropped the connection
            finally:
                with fake.changed:
                    fake.watches.discard(self.connection)

        def _log(self, namespace: str, name: str, query: dict[str, str]) -> None:
            pod = fake.get("pods", namespace, name)
            if pod is None:
                return self._send(404, status_body(404, "NotFound", f'pods "{name}" not found'))
            container = query.get("container", "run")
            unavailable = _no_log_yet(pod, container)
            if unavailable is not None:
                return self._send(400, status_body(400, "BadRequest", unavailable))
            limit = int(query.get("limitBytes", "0")) or None
            if query.get("follow") not in TRUE:
                text = fake.served_log(namespace, name, container)[:limit]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                return self.wfile.write(text) and None
            self._start_stream("text/plain")
            sent = 0
            try:
                while True:
                    text = fake.served_log(namespace, name, container)
                    if len(text) > sent:
                        self._chunk(text[sent:])
                        sent = len(text)
                    if _container_ended(fake.get("pods", namespace, name), container):
                        break
                    fake.wait(0.05)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass

    return Handler


def _matches(item: dict[str, Any], selector: str | None, fields: str | None) -> bool:
    return matches(item, selector) and fields_match(item, fields)


def _no_log_yet(pod: dict[str, Any], container: str) -> str | None:
    """Why the kubelet has no log of `container` to serve (the API server answers 400 with
    its words), or None: the container has run, or runs."""
    statuses = [
        *pod["status"].get("initContainerStatuses", []),
        *pod["status"].get("containerStatuses", []),
    ]
    found = next((s for s in statuses if s["name"] == container), None)
    where = f'container "{container}" in pod "{pod["metadata"]["name"]}"'
    if found is None:
        return f"{where} is not available"
    waiting = found["state"].get("waiting")
    if waiting is None:
        return None
    reason = waiting.get("reason", "")
    words = {
        "ErrImagePull": "image can't be pulled",
        "ImagePullBackOff": "trying and failing to pull image",
    }
    return f"{where} is waiting to start: {words.get(reason, reason)}"


def _container_ended(pod: dict[str, Any] | None, container: str) -> bool:
    if pod is None or pod["status"].get("phase") in ("Succeeded", "Failed"):
        return True
    statuses = [
        *pod["status"].get("initContainerStatuses", []),
        *pod["status"].get("containerStatuses", []),
    ]
    return any(s["name"] == container and "terminated" in s["state"] for s in statuses)


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
        return group, resource, "watch" if query.get("watch") in TRUE else "list"
    verbs = {"GET": "get", "POST": "create", "PATCH": "patch", "DELETE": "delete"}
    return group, resource, verbs[method]


def _review(fake: FakeKubernetes, body: dict[str, Any]) -> dict[str, Any]:
    problem = invalid(
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
