"""A fake Kubernetes API server: the real HTTP wire protocol, for the real `kubernetes` client.

The store keeps objects in memory with resource versions, and serves lists (label and field
selectors), merge patches, deletes, watches and pod logs (`fake_http`). It checks every object
a client sends against the real Kubernetes schemas (`kubernetes-validate`): an invalid one is
refused with 422, as a real server would, and kept in `invalid` for the test to see. Behind it
run a Job controller, Pod Security admission, a kubelet and a garbage collector
(`fake_cluster`); pods are played by the test's `Script` (`fake_scripts`).

What a real API server does to its clients is here too: `blip()` drops every open watch,
forgets the event history (a watch resumed from an older resourceVersion gets ERROR 410
Gone) and answers the next requests 503; `log_max_bytes` rotates container logs (the API
serves the newest file only).
"""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.kubernetes.fake_cluster import GC_DELAY_SECONDS, JobController, now
from tests.kubernetes.fake_http import handler
from tests.kubernetes.fake_objects import fields_match, invalid, matches, merged, status_body
from tests.kubernetes.fake_scripts import Script, succeeds

WATCHED = ("pods", "jobs", "events")


class FakeKubernetes:
    def __init__(self, script: Callable[[dict[str, Any]], Script] | None = None) -> None:
        self.script = script or (lambda job: succeeds())
        self.refuse: Callable[[dict[str, Any]], str | None] = lambda pod: None
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], dict[str, bytes]] = {}
        self.log_max_bytes: int | None = None
        self.received: list[dict[str, Any]] = []  # objects clients created
        self.patches: list[tuple[str, str, dict[str, Any]]] = []  # (resource, name, patch)
        self.invalid: list[str] = []
        self.granted: set[tuple[str, str, str]] | None = None  # None: everything
        self.calls: set[tuple[str, str, str]] = set()  # (group, resource, verb) clients used
        self.history: list[tuple[int, str, str, dict[str, Any]]] = []
        self.compacted = 0  # watches from an older resourceVersion get 410 Gone
        self.failures = 0  # the next requests answered 503
        self.refused_patches = 0  # the next pod PATCHes answered 503 (a restart just then)
        self.watches: set[socket.socket] = set()
        self.watch_queries: list[dict[str, str]] = []  # the query of every watch request
        self.expired_watches = 0  # watches answered ERROR 410 Gone
        self.changed = threading.Condition()
        self.closed = False
        self.pending = 0
        self.version = 0
        self.controller = JobController(self)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler(self))
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

    # ---- what tests do to the server ---------------------------------------------------

    def blip(self, failures: int = 2) -> None:
        """The API server restarts: open watches drop, the history is gone, requests fail."""
        with self.changed:
            self.compacted = self.version + 1
            self.failures = failures
            for connection in list(self.watches):
                connection.shutdown(socket.SHUT_RDWR)
            self.watches.clear()

    def settle(self) -> None:
        """Until the kubelets and the garbage collector have nothing left to do."""
        with self.changed:
            while self.pending:
                self.changed.wait(0.1)

    def wait_for(self, condition: Callable[[], bool], seconds: float = 30) -> None:
        """Until `condition()` holds, woken by every change to the store."""
        until = time.monotonic() + seconds
        with self.changed:
            while not condition():
                left = until - time.monotonic()
                assert left > 0, "the fake cluster never got there"
                self.changed.wait(left)

    def background(self, work: Callable[..., None], *args: Any) -> None:
        def run() -> None:
            try:
                work(*args)
            finally:
                with self.changed:
                    self.pending -= 1
                    self.changed.notify_all()

        with self.changed:
            self.pending += 1
        threading.Thread(target=run, daemon=True).start()

    def wait(self, seconds: float) -> None:
        with self.changed:
            if not self.closed:
                self.changed.wait(max(0.0, min(seconds, 0.5)))

    def run_configmaps(self) -> list[str]:
        """ConfigMaps but the runners' leases (which live as long as their runner)."""
        return [name for name in self.named("configmaps") if not name.startswith("oneoff-lease-")]

    # ---- object store ------------------------------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.changed:
            found = self.objects.get((resource, namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def create(self, resource: str, namespace: str, body: dict[str, Any]) -> tuple[int, Any]:
        self.received.append(copy.deepcopy(body))
        problem = invalid(body)
        if problem:
            self.invalid.append(problem)
            return 422, status_body(422, "Invalid", problem)
        owners = body["metadata"].get("ownerReferences") or []
        if any(owner.get("blockOwnerDeletion") for owner in owners):
            # OwnerReferencesPermissionEnforcement: may the client update the owner's finalizers?
            self.calls.add(("batch", "jobs/finalizers", "update"))
        name = body["metadata"]["name"]
        if (resource, namespace, name) in self.objects:
            return 409, status_body(409, "AlreadyExists", f'{resource} "{name}" already exists')
        stored = copy.deepcopy(body)
        stored["metadata"].update(
            namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=now()
        )
        if resource == "jobs":
            stored["status"] = {}
        self.put(resource, namespace, stored, "ADDED")
        if resource == "jobs" and not stored["spec"].get("suspend"):
            self.controller.resumed(stored)
        return 201, stored

    def patch(
        self,
        resource: str,
        namespace: str,
        name: str,
        patch: dict[str, Any],
        *,
        internal: bool = False,
    ) -> tuple[int, Any]:
        current = self.get(resource, namespace, name)
        if current is None:
            return 404, status_body(404, "NotFound", f'{resource} "{name}" not found')
        if not internal:
            self.patches.append((resource, name, copy.deepcopy(patch)))
            refused = _refused_patch(resource, current, patch)
            if refused:
                self.invalid.append(refused)
                return 422, status_body(422, "Invalid", refused)
        was_suspended = current.get("spec", {}).get("suspend")
        updated = merged(current, patch)
        self.put(resource, namespace, updated, "MODIFIED")
        if resource == "jobs" and was_suspended and not updated["spec"].get("suspend"):
            self.controller.resumed(updated)
        return 200, updated

    def delete(self, resource: str, namespace: str, name: str) -> tuple[int, Any]:
        """Running pods end gracefully (their kubelet stops them); an object's dependents (a
        Job's pods and Secrets, whatever names it in ownerReferences) go a moment after it
        (background propagation)."""
        found = self.get(resource, namespace, name)
        if found is None:
            return 404, status_body(404, "NotFound", f'{resource} "{name}" not found')
        ended = found.get("status", {}).get("phase") in ("Succeeded", "Failed")
        if resource == "pods" and not ended:  # an ended pod goes at once, as on a real server
            if not found["metadata"].get("deletionTimestamp"):
                self.patch(
                    resource,
                    namespace,
                    name,
                    {"metadata": {"deletionTimestamp": now()}},
                    internal=True,
                )
            return 200, found
        self.remove(resource, namespace, name)
        uid = found["metadata"].get("uid")  # a test may have put it in without one
        if uid is not None and self._dependents(namespace, uid):
            self.background(self._collect_garbage, namespace, uid)
        return 200, status_body(200, "Success", "deleted")

    def remove(self, resource: str, namespace: str, name: str) -> None:
        with self.changed:
            found = self.objects.pop((resource, namespace, name), None)
            self.logs.pop((namespace, name), None)
            if found is not None:
                self.version += 1
                self._record("DELETED", resource, found)

    def _collect_garbage(self, namespace: str, uid: str) -> None:
        self.wait(GC_DELAY_SECONDS)
        for kind, name in self._dependents(namespace, uid):
            self.delete(kind, namespace, name)

    def _dependents(self, namespace: str, uid: str) -> list[tuple[str, str]]:
        """(resource, name) of what the object `uid` owns (ownerReferences)."""
        with self.changed:
            return [
                (kind, name)
                for (kind, space, name), item in self.objects.items()
                if space == namespace
                and any(o.get("uid") == uid for o in item["metadata"].get("ownerReferences", []))
            ]

    def list(
        self, resource: str, namespace: str, selector: str | None, fields: str | None = None
    ) -> list[dict[str, Any]]:
        with self.changed:
            return [
                copy.deepcopy(item)
                for (kind, space, _), item in self.objects.items()
                if kind == resource
                and space == namespace
                and matches(item, selector)
                and fields_match(item, fields)
            ]

    def put(self, resource: str, namespace: str, item: dict[str, Any], kind: str) -> None:
        with self.changed:
            self.version += 1
            item["metadata"]["resourceVersion"] = str(self.version)
            item["metadata"].setdefault("namespace", namespace)
            self.objects[(resource, namespace, item["metadata"]["name"])] = copy.deepcopy(item)
            self._record(kind, resource, item)

    def _record(self, kind: str, resource: str, item: dict[str, Any]) -> None:
        if resource in WATCHED:
            self.history.append((self.version, kind, resource, copy.deepcopy(item)))
        self.changed.notify_all()

    def set_logs(self, namespace: str, name: str, logs: dict[str, bytes]) -> None:
        with self.changed:
            if ("pods", namespace, name) in self.objects:
                self.logs[(namespace, name)] = dict(logs)
                self.changed.notify_all()

    def served_log(self, namespace: str, name: str, container: str) -> bytes:
        """The container's log as the kubelet serves it: the newest file only, once rotated
        (the runtime rotates between whole lines)."""
        with self.changed:
            text = self.logs.get((namespace, name), {}).get(container, b"")
        size = self.log_max_bytes
        if size is None or len(text) <= size:
            return text
        cut = (len(text) // size) * size
        start = text.find(b"\n", cut - 1) + 1 if text[cut - 1 : cut] != b"\n" else cut
        return text[start:]


def _refused_patch(resource: str, current: dict[str, Any], patch: dict[str, Any]) -> str | None:
    """Pod updates the API server refuses: activeDeadlineSeconds may only be set or lowered."""
    if resource != "pods":
        return None
    wanted = patch.get("spec", {}).get("activeDeadlineSeconds")
    existing = current["spec"].get("activeDeadlineSeconds")
    if wanted is None:
        return None
    if wanted < 1 or (existing is not None and wanted > existing):
        return f"spec.activeDeadlineSeconds: may only be lowered (from {existing} to {wanted})"
    return None
