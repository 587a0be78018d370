"""Where the kubernetes client's exceptions become `RunnerError`s (`api_errors`, the backend's one
translation boundary), and how a pod that cannot start says why."""

from __future__ import annotations

import json
import logging
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
    PolicyRefused,
    RegistryAuthFailed,
    RegistryUnavailable,
    RunnerError,
)

log = logging.getLogger("oneoff_runner.kubernetes")

PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
PULL_ATTEMPTS = 3
RUN_CONTAINER_NAME = "run"
AUTH_WORDS = ("unauthorized", "authentication", "denied", "401", "403 forbidden")
MISSING_WORDS = ("not found", "manifest unknown", "does not exist", "name unknown", "404")


class ApiUnreachable(BackendUnavailable):
    """The API server could not be reached or failed (5xx): says nothing about the run, which
    may well go on; never a reason to mark or delete it."""


@contextmanager
def api_errors(action: str) -> Iterator[None]:
    try:
        yield
    except RunnerError:
        raise
    except ApiException as exc:
        raise _translated(action, exc) from exc
    except (urllib3.exceptions.HTTPError, OSError, ConfigException) as exc:
        raise ApiUnreachable(
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
    return ApiUnreachable(f"the Kubernetes API failed while {action}: {message}")


def _message(exc: ApiException) -> str:
    try:
        body: dict[str, Any] = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return str(exc.reason)
    return str(body.get("message") or exc.reason)


def never_created(message: str) -> RunnerError | None:
    """A `FailedCreate` event of the run's Job, as the error to answer at once, or None while
    the refusal may clear: the Job controller retries the pod with backoff (1 s doubling to
    1 min), so a ResourceQuota that frees up when another pod ends, a service account made a
    moment later or an admission webhook that was down lets the run start. A refusal of the
    pod itself (Pod Security, an invalid spec, a webhook's denial, a LimitRange) never clears.
    """
    if "PodSecurity" in message:
        return PolicyRefused(
            f"the cluster's Pod Security admission refused the run's pod ({message}); the run "
            "namespace's pod-security level must admit it, or change the request (user)"
        )
    if "denied the request" in message:
        return PolicyRefused(
            f"an admission webhook of the cluster refused the run's pod ({message}); change the "
            "request, or ask the cluster's operator"
        )
    if "usage per " in message:
        field = "cpus" if "cpu usage" in message else "memory"
        return InvalidRequest(
            f"{field}: a LimitRange of the run namespace refused the run's pod ({message}); ask "
            "for limits within it",
            field=field,
        )
    if " is invalid" in message:
        return InvalidRequest(
            f"Kubernetes refused the run's pod as invalid ({message}); the request or an "
            "operator setting (RUNNER_KUBE_*) does not fit the cluster"
        )
    return None


def still_refused(message: str, seconds: int) -> RunnerError:
    """A refusal the Job controller kept meeting until the run's start timeout."""
    return BackendUnavailable(
        f"the cluster refused to create the run's pod for {seconds} s "
        f"(RUNNER_KUBE_START_TIMEOUT_SECONDS), the last time with: {message}; a ResourceQuota, "
        "a missing service account or an admission webhook of the run namespace stops it"
    )


class PullJudge:
    """A waiting container's reason, as the error a caller can act on, or None while it may
    still start. A pull the registry refused as unknown or unauthorized is final at once; other
    pull failures (rate limits, timeouts) are retried by the kubelet, and are final only after
    `PULL_ATTEMPTS` of them. `CreateContainerError` is often transient (a name conflict after
    a restart): the kubelet retries it, so it is waited on too."""

    def __init__(self, image: str, helper_image: str) -> None:
        self.image, self.helper_image = image, helper_image
        self.last: dict[str, str] = {}
        self.pull_failures = 0

    def judge(self, container: str, reason: str, message: str) -> RunnerError | None:
        if reason == "ErrImagePull" and self.last.get(container) != reason:
            self.pull_failures += 1
        self.last[container] = reason
        if container != RUN_CONTAINER_NAME and (
            reason in PULL_FAILURES or reason == "ErrImageNeverPull"
        ):
            return self._helper(reason, message)
        if reason == "ErrImageNeverPull":
            return ImageNotFound(
                f"image: {self.image!r} is not on the node and pull_policy is 'never' "
                "(ErrImageNeverPull); use pull_policy 'missing'",
                field="image",
            )
        if reason in PULL_FAILURES:
            return self._pull(reason, message)
        if reason == "CreateContainerConfigError":
            return InvalidRequest(f"the run's container could not be created: {message}")
        return None

    def _pull(self, reason: str, message: str) -> RunnerError | None:
        """The kind of failure, in our words: the kubelet's message carries the registry's
        answer, which goes to the log only."""
        lowered = message.lower()
        if any(word in lowered for word in AUTH_WORDS):
            error: RunnerError = RegistryAuthFailed(
                f"auth_config: the registry refused to hand out {self.image!r} ({reason}); "
                "check the credentials, or pass auth_config for a private registry",
                field="auth_config",
            )
        elif reason == "InvalidImageName" or any(word in lowered for word in MISSING_WORDS):
            error = ImageNotFound(
                f"image: {self.image!r} could not be pulled ({reason}); check the name and "
                "tag, and auth_config for a private registry",
                field="image",
            )
        elif self.pull_failures >= PULL_ATTEMPTS:
            error = RegistryUnavailable(
                f"image: pulling {self.image!r} failed {self.pull_failures} times ({reason}); "
                "the registry may be limiting or down, try again later",
                field="image",
            )
        else:
            return None
        log.warning("pulling %r failed: %s: %r", self.image, reason, message)
        return error

    def _helper(self, reason: str, message: str) -> RunnerError | None:
        if reason == "ErrImagePull" and self.pull_failures < PULL_ATTEMPTS:
            lowered = message.lower()
            if not any(word in lowered for word in (*AUTH_WORDS, *MISSING_WORDS)):
                return None
        return BackendUnavailable(
            f"the runner's helper image {self.helper_image!r} could not be pulled ({reason}: "
            f"{message}); check RUNNER_KUBE_HELPER_IMAGE and RUNNER_KUBE_IMAGE_PULL_SECRETS"
        )
