"""Where docker-py's and requests' exceptions become `RunnerError`s: `engine_errors`, the Docker
backend's one translation boundary, and the phase-specific readings of the engine's messages
(pull, create, start) that turn them into errors naming the request field to fix.
"""

from __future__ import annotations

import re
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


def exists(what: str, inspect: Callable[[str], object], name: str) -> bool:
    """Whether `inspect(name)` finds the object (the engine's 404 says it does not)."""
    try:
        with engine_errors(f"inspecting the {what}"):
            inspect(name)
    except NotFound:
        return False
    return True


def _explanation(exc: docker.errors.APIError) -> str:
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    return scrub(str(explanation or exc))


_PATH = re.compile(r"/[^\s\"'(),]+")
_ENGINE_ROOTS = (
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/run/docker",
    "/run/docker",
    "/var/run/containerd",
    "/run/containerd",
    "/run/runc",
    "/proc/self/",
)
_ENGINE_LAYOUT = ("/_data", "/overlay2/", "/merged", "/volumes/", "/containers/", "/runtime-")
ENGINE_PATH = "<engine path>"


def scrub(message: str) -> str:
    """`message` without the engine's host paths (its data root, runtime state, the runc
    process's file descriptors): they tell a caller about the host and help no one fix a
    request. Container paths, which the caller wrote, stay."""

    def replace(match: re.Match[str]) -> str:
        path = match.group(0).rstrip(":.;")
        punctuation = match.group(0)[len(path) :]
        if path.startswith(_ENGINE_ROOTS) or any(part in path for part in _ENGINE_LAYOUT):
            return ENGINE_PATH + punctuation
        return match.group(0)

    return _PATH.sub(replace, message)


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


def _credentials_required(image: str) -> RunnerError:
    return RegistryAuthFailed(
        f"auth_config: the registry of {image!r} requires credentials; pass auth_config with "
        "a username and password",
        field="auth_config",
    )


def pull_failure(message: str, image: str, *, with_auth: bool) -> RunnerError:
    """One clear error per way a registry says no; the credentials are never part of it."""
    low = message.lower()
    if "no basic auth credentials" in low and not with_auth:
        # the registry asked for credentials and none were sent; Docker 29 says it after
        # "pull access denied, repository does not exist or may require authorization"
        return _credentials_required(image)
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
        return _credentials_required(image)
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
    if "invalid reference format" in low or "repository name must" in low:
        return InvalidRequest(
            f"image: {image!r} is not a valid image reference ({message})", field="image"
        )
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
    if "invalid reference format" in low or "repository name must" in low:
        return InvalidRequest(f"image: {message}; check the image reference", field="image")
    if "no such image" in low:
        return ImageNotFound(f"image: {message}", field="image")
    # Docker 20.10: "Unknown runtime specified x"; 29: "unknown or invalid runtime name: x"
    if "unknown runtime specified" in low or "unknown or invalid runtime name" in low:
        return InvalidRequest(
            f"runtime: {message}; the operator allows it but the engine does not have it: "
            "leave runtime out, or ask the operator to register it with the engine",
            field="runtime",
        )
    if "no command specified" in low:
        return InvalidRequest(
            "command: the image has no CMD or ENTRYPOINT, so there is nothing to run; give "
            "`command` (or `entrypoint`)",
            field="command",
        )
    if "minimum memory limit" in low:
        return InvalidRequest(f"memory: {message}; ask for at least 6m", field="memory")
    if "cannot mkdir" in low or "file name too long" in low:
        return InvalidRequest(
            f"working_dir: {message}; name a directory, or a path that does not exist yet",
            field="working_dir",
        )
    return None


def start_refused(spec: RunSpec) -> Translate:
    argv_field = "entrypoint" if spec.entrypoint else "command"

    def translate(message: str) -> RunnerError | None:
        low = message.lower()
        if network_error := _missing_network(message):
            return network_error
        if "uids and gids must be in range" in low:
            return InvalidRequest(
                f"user: {spec.user!r} is out of range ({message}); use a uid and gid from 0 to "
                "2147483647",
                field="user",
            )
        if "unable to find user" in low or "no matching entries in passwd" in low:
            return InvalidRequest(
                f"user: {spec.user!r} does not exist in the image ({message}); use a numeric "
                "uid[:gid] or a user the image defines",
                field="user",
            )
        if "error mounting" in low or "inside container" in low or "rootfs" in low:
            return InvalidRequest(
                f"volumes: a path could not be mounted ({message}); a file cannot go where the "
                "image has a directory, nor a directory where it has a file: choose another "
                "container path",
                field="volumes",
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
