"""Where docker-py's and requests' exceptions become `RunnerError`s: `engine_errors`, the Docker
backend's one translation boundary, and the phase-specific readings of the engine's messages
(pull, create, start) that turn them into errors naming the request field to fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import docker
import requests

from runner.errors import (
    BackendUnavailable,
    Conflict,
    ImageNotFound,
    InvalidRequest,
    NotFound,
    RegistryAuthFailed,
    RegistryUnavailable,
    RunnerError,
)
from runner.spec import RunSpec

Translate = Callable[[str], RunnerError | None]


@contextmanager
def engine_errors(action: str, translate: Translate | None = None) -> Iterator[None]:
    """The one boundary where docker-py's and requests' exceptions become `RunnerError`s."""
    try:
        yield
    except RunnerError:
        raise
    except docker.errors.APIError as exc:
        message = _explanation(exc)
        specific = translate(message) if translate else None
        if specific is not None:
            raise specific from exc
        status = exc.status_code or 500
        if status == 404:
            raise NotFound(f"{action}: {message}") from exc
        if status == 409:
            raise Conflict(f"{action}: {message}") from exc
        raise RunnerError(f"the Docker engine failed while {action}: {message}") from exc
    except (requests.exceptions.RequestException, docker.errors.DockerException) as exc:
        raise BackendUnavailable(
            f"cannot reach the Docker engine while {action} ({type(exc).__name__}); check that "
            "dockerd runs and DOCKER_HOST points at it"
        ) from exc


def _explanation(exc: docker.errors.APIError) -> str:
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    return str(explanation or exc)


_AUTH_WORDS = (
    "unauthorized",
    "authentication required",
    "no basic auth credentials",
    "incorrect username or password",
    "access denied",
)
_UNREACHABLE_WORDS = (
    "no such host",
    "connection refused",
    "i/o timeout",
    "dial tcp",
    "timeout",
    "tls:",
    "server gave http response",
    "network is unreachable",
)


def pull_failure(message: str, image: str, *, with_auth: bool) -> RunnerError:
    """One clear error per way a registry says no; the credentials are never part of it."""
    low = message.lower()
    if "pull access denied" in low or "repository does not exist" in low:
        if with_auth:
            return RegistryAuthFailed(
                f"auth_config: the registry refused access to {image!r}: the credentials were "
                "rejected or the image does not exist; check the image name and the credentials",
                field="auth_config",
            )
        return ImageNotFound(
            f"image: {image!r} was not found, or is private: check the name, or pass "
            "auth_config with credentials for its registry",
            field="image",
        )
    if any(word in low for word in _AUTH_WORDS):
        if with_auth:
            return RegistryAuthFailed(
                f"auth_config: the registry rejected the credentials for {image!r}; check "
                "auth_config.username and auth_config.password (and serveraddress)",
                field="auth_config",
            )
        return RegistryAuthFailed(
            f"auth_config: the registry of {image!r} requires credentials; pass auth_config "
            "with a username and password",
            field="auth_config",
        )
    if "manifest unknown" in low or "not found" in low or "manifest for" in low:
        return ImageNotFound(
            f"image: {image!r} was not found in its registry; check the name and tag",
            field="image",
        )
    if any(word in low for word in _UNREACHABLE_WORDS):
        return RegistryUnavailable(
            f"image: the registry of {image!r} could not be reached ({message}); check the "
            "registry address, or use a local image with pull_policy 'missing' or 'never'",
            field="image",
        )
    if "invalid reference format" in low:
        return InvalidRequest(f"image: {image!r} is not a valid image reference", field="image")
    return RegistryUnavailable(f"image: pulling {image!r} failed: {message}", field="image")


def content_refused(message: str) -> RunnerError | None:
    return InvalidRequest(
        f"volumes: the engine refused the content ({message}); check the archives' paths",
        field="volumes",
    )


def _missing_network(message: str) -> RunnerError | None:
    low = message.lower()
    if "network" in low and "not found" in low:
        return NotFound(f"network: {message}; name an existing network", field="network")
    return None


def create_refused(message: str) -> RunnerError | None:
    low = message.lower()
    if network_error := _missing_network(message):
        return network_error
    if "bind source path does not exist" in low:
        return InvalidRequest(
            f"volumes: {message}; host_path must exist on the engine's host", field="volumes"
        )
    if "invalid reference format" in low:
        return InvalidRequest(f"image: {message}", field="image")
    if "no such image" in low:
        return ImageNotFound(f"image: {message}", field="image")
    return None


def start_refused(spec: RunSpec) -> Translate:
    argv_field = "entrypoint" if spec.entrypoint else "command"

    def translate(message: str) -> RunnerError | None:
        low = message.lower()
        if network_error := _missing_network(message):
            return network_error
        if "unable to find user" in low or "no matching entries in passwd" in low:
            return InvalidRequest(
                f"user: {spec.user!r} does not exist in the image ({message}); use a numeric "
                "uid[:gid] or a user the image defines",
                field="user",
            )
        if "executable file not found" in low or "no such file or directory" in low:
            return InvalidRequest(
                f"{argv_field}: the program to run was not found in the image ({message}); "
                "check the path, or give an absolute one",
                field=argv_field,
            )
        if "permission denied" in low:
            return InvalidRequest(
                f"{argv_field}: the program could not be executed ({message}); a script "
                'needs mode "0755" and a shebang line',
                field=argv_field,
            )
        return InvalidRequest(f"the container could not start: {message}")

    return translate
