"""The chart installed as a user installs it, for the real-cluster tests (`-m cluster`): `helm`
and `kubectl` from PATH (`eval "$(scripts/cluster.sh env)"` puts them there), the runner's image
as the cluster has it (RUNNER_KUBE_HELPER_IMAGE, `oneoff-runner:dev` loaded by
`scripts/cluster.sh load`), and its REST API reached through `kubectl port-forward`, as the
chart's NOTES say."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from backends.labels import MANAGED
from tests.helpers import ROOT
from tests.kubernetes.cluster_support import WAIT_SECONDS, core, watch_until

CHART = ROOT / "deploy" / "helm" / "oneoff-runner"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
FORWARDING = re.compile(rb"Forwarding from 127\.0\.0\.1:(\d+) -> \d+")


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f'the Helm tests need {name} on PATH: eval "$(scripts/cluster.sh env)"',
            pytrace=False,
        )
    return found


def image() -> tuple[str, str]:
    """The runner's image as (repository, tag): the one the cluster has loaded."""
    name = os.environ.get("RUNNER_KUBE_HELPER_IMAGE", "oneoff-runner:dev")
    repository, _, tag = name.rpartition(":")
    return repository, tag


class PortForward:
    """`kubectl port-forward svc/...` to one of the runner's ports (REST 8000, MCP 8001), on a
    free local port. It forwards to one pod: when that pod goes, `url()` starts a new one."""

    def __init__(self, space: str, service: str, port: int) -> None:
        self.space, self.service, self.target = space, service, port
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def url(self) -> str:
        if self.process is None or self.process.poll() is not None:
            self.close()
            target = [f"svc/{self.service}", f":{self.target}"]
            self.process = subprocess.Popen(
                [tool("kubectl"), "-n", self.space, "port-forward", *target],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            assert self.process.stdout is not None
            first = self.process.stdout.readline()  # printed once it listens
            found = FORWARDING.match(first)
            assert found is not None, f"kubectl port-forward said {first!r}"
            self.port = int(found.group(1))
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.communicate(timeout=30)  # and closes its stdout
            self.process = None


class Release:
    """One `helm install` of the chart in a namespace of its own (Pod Security `restricted`),
    with the chart's generated token."""

    def __init__(self) -> None:
        self.space = f"oneoff-helm-{uuid.uuid4().hex[:8]}"
        self.name = "runner"
        self.fullname = f"{self.name}-oneoff-runner"
        self.forward = PortForward(self.space, self.fullname, 8000)
        self.mcp_forward = PortForward(self.space, self.fullname, 8001)
        self.installed = False

    def helm(self, command: str, *settings: str) -> None:
        """`helm install` or `helm upgrade` (keeping the values set before), waiting until the
        runner is ready."""
        repository, tag = image()
        arguments = [tool("helm"), command, self.name, str(CHART), "-n", self.space, "--wait"]
        arguments += ["--timeout", f"{WAIT_SECONDS}s"]
        if command == "upgrade":
            arguments.append("--reuse-values")
        values = [f"image.repository={repository}", f"image.tag={tag}", *settings]
        subprocess.run([*arguments, *(f"--set={value}" for value in values)], check=True)
        self.installed = True

    def uninstall(self) -> None:
        self.forward.close()
        self.mcp_forward.close()
        if self.installed:
            command = [tool("helm"), "uninstall", self.name, "-n", self.space, "--wait"]
            subprocess.run(command, check=True)
            self.installed = False

    def token(self) -> str:
        found = core().read_namespaced_secret(f"{self.fullname}-tokens", self.space)
        return base64.b64decode(found.data["tokens"]).decode().strip()

    def client(self, token: str | None = None) -> httpx.Client:
        """The REST API through the port-forward, as the release's tenant (its token)."""
        headers = {"Authorization": f"Bearer {token or self.token()}"}
        return httpx.Client(base_url=self.forward.url(), headers=headers, timeout=WAIT_SECONDS)

    def mcp(self) -> Any:
        """The official MCP SDK client on Streamable HTTP through the port-forward to 8001, with
        the release's token (an async context manager)."""
        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        http = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {self.token()}"}, timeout=WAIT_SECONDS
        )
        url = f"{self.mcp_forward.url()}/mcp"
        return Client(streamable_http_client(url, http_client=http), mode="legacy")

    def runner_pods(self) -> list[Any]:
        selector = f"app.kubernetes.io/instance={self.name}"
        return list(core().list_namespaced_pod(self.space, label_selector=selector).items)

    def ready_runner_other_than(self, gone: str) -> Any:
        """A ready runner pod that is not `gone` (the Deployment's replacement)."""
        selector = f"app.kubernetes.io/instance={self.name}"

        def ready(pod: Any) -> bool:
            conditions = pod.status.conditions or []
            is_ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
            return bool(
                pod.metadata.name != gone and is_ready and not pod.metadata.deletion_timestamp
            )

        return watch_until(
            core().list_namespaced_pod, ready, namespace=self.space, label_selector=selector
        )

    def run_objects(self) -> list[str]:
        """What the runner has made in the namespace: Jobs, pods, Secrets and ConfigMaps that
        carry its labels."""
        from kubernetes import client

        api, selector = core(), f"{MANAGED}=true"
        batch = client.BatchV1Api(api.api_client)
        found = {
            "Job": batch.list_namespaced_job(self.space, label_selector=selector).items,
            "Pod": api.list_namespaced_pod(self.space, label_selector=selector).items,
            "Secret": api.list_namespaced_secret(self.space, label_selector=selector).items,
            "ConfigMap": api.list_namespaced_config_map(self.space, label_selector=selector).items,
        }
        return [f"{kind} {item.metadata.name}" for kind, items in found.items() for item in items]


@contextlib.contextmanager
def installed(*settings: str) -> Iterator[Release]:
    """The chart installed in a restricted namespace of its own, with `settings` (`--set`
    values); uninstalled and the namespace deleted afterwards."""
    from tests.kubernetes.cluster_support import delete_namespace, labelled_namespace

    release = Release()
    labelled_namespace(core(), release.space, RESTRICTED)
    try:
        release.helm("install", *settings)
        yield release
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            release.uninstall()
        delete_namespace(core(), release.space)
