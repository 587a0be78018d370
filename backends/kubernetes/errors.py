"""Where the kubernetes client's exceptions become `RunnerError`s (`api_errors`, the backend's one
translation boundary), and how a pod that cannot start says why."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from runner.errors import (
    BackendUnavailable,
    Conflict,
    ImageNotFound,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RegistryAuthFailed,
    RunnerError,
)

PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
CONFIG_FAILURES = frozenset({"CreateContainerConfigError", "CreateContainerError"})


@contextmanager
def api_errors(action: str) -> Iterator[None]:
    try:
        yield
    except RunnerError:
        raise
    except ApiException as exc:
        raise _translated(action, exc) from exc
    except (urllib3.exceptions.HTTPError, OSError, ConfigException) as exc:
        raise BackendUnavailable(
            f"cannot reach the Kubernetes API while {action} ({type(exc).__name__}); check "
            "KUBECONFIG / RUNNER_KUBE_CONTEXT, or the in-cluster service account"
        ) from exc


def _translated(action: str, exc: ApiException) -> RunnerError:
    message = _message(exc)
    if exc.status == 404:
        return NotFound(f"{action}: {message}")
    if exc.status == 409:
        return Conflict(f"{action}: {message}")
    if exc.status in (401, 403):
        return BackendUnavailable(
            f"the Kubernetes API refused {action}: {message}; the runner's service account "
            "lacks a permission (see the chart's Role)"
        )
    if exc.status == 413 or "too long" in message or "too large" in message:
        return PayloadTooLarge(
            f"volumes: the run's content is over the Kubernetes object size limit ({message}); "
            "send less, or put it in a volume first",
            field="volumes",
        )
    if exc.status == 422:
        return InvalidRequest(f"Kubernetes refused the run's objects: {message}")
    return BackendUnavailable(f"the Kubernetes API failed while {action}: {message}")


def _message(exc: ApiException) -> str:
    try:
        body: dict[str, Any] = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return str(exc.reason)
    return str(body.get("message") or exc.reason)


def pod_refused(reason: str, message: str, image: str) -> RunnerError | None:
    """A waiting container's reason, as the error a caller can act on; None while it may still
    start."""
    lowered = message.lower()
    if reason in PULL_FAILURES:
        if any(word in lowered for word in ("unauthorized", "authentication", "denied", "401")):
            return RegistryAuthFailed(
                f"auth_config: the registry refused to hand out {image!r} ({message}); check "
                "the credentials",
                field="auth_config",
            )
        return ImageNotFound(
            f"image: {image!r} could not be pulled ({reason}: {message}); check the name and "
            "tag, and auth_config for a private registry",
            field="image",
        )
    if reason in CONFIG_FAILURES:
        return InvalidRequest(f"the run's container could not be created: {message}")
    return None
