"""Where docker-py's and requests' exceptions become `RunnerError`s: `engine_errors`, the Docker
backend's one translation boundary, and the phase-specific readings of the engine's messages
(pull, create, start) that turn them into errors naming the request field to fix.
"""

from __future__ import annotations

import errno
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import docker
import requests
from docker.context import ContextAPI

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

log = logging.getLogger("oneoff_runner.docker")

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


DEFAULT_ADDRESS = "unix:///var/run/docker.sock"


def unreachable(exc: BaseException, address: str) -> BackendUnavailable:
    """The engine at `address` could not be reached: why, in words, and what to do."""
    cause = _os_error(exc)
    code = cause.errno if cause is not None else None
    if code == errno.ENOENT:
        problem = f"no Docker engine at {address}: the socket does not exist"
    elif code == errno.EACCES:
        problem = (
            f"no access to the Docker engine at {address}: permission denied; add your user to "
            "the docker group (and log in again), or use rootless Docker"
        )
    elif code == errno.ECONNREFUSED:
        problem = f"the Docker engine at {address} refused the connection"
    else:
        reason = cause.strerror if cause is not None else str(exc)
        problem = f"cannot reach the Docker engine at {address}: {reason}"
    hint = _context() if address == DEFAULT_ADDRESS else ""
    return BackendUnavailable(
        f"{problem}; start dockerd, or point DOCKER_HOST at a running engine{hint}"
    )


def _os_error(exc: BaseException | None) -> OSError | None:
    """The operating system's own error under docker-py's and requests' wrappers."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _context() -> str:
    """A hint when the `docker` command uses another engine than the default one, through a
    context (as rootless Docker sets up)."""
    try:
        current = ContextAPI.get_current_context()
    except (docker.errors.DockerException, LookupError, ValueError, OSError):  # a bad config
        return ""
    if current is None or current.Name == "default" or not current.Host:
        return ""
    return (
        f" (the docker command uses context {current.Name!r}, at {current.Host}: set "
        f"DOCKER_HOST={current.Host} to use that engine)"
    )


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


def pull_failure(message: str, image: str, *, with_auth: bool, absent: bool = False) -> RunnerError:
    """What kind of no the registry (or the way to it) said, in our words: its answer may hold
    anything the registry chose to send, so it goes to the log only, never to the caller; nor
    do the credentials (`message` has the password masked already). `absent`: the pull was for
    an image the engine does not have (pull_policy missing)."""
    log.warning("pulling %r failed: %r", image, message)
    low = message.lower()
    for words, kind in _PULL_FAILURES:
        if any(word in low for word in words):
            if kind is _unreachable and absent:
                return _absent_and_unreachable(image)
            return kind(image, with_auth)
    return RegistryUnavailable(
        f"image: the registry of {image!r} failed the pull (an error, or an answer the engine "
        "could not use: the runner's log has it); try again later",
        field="image",
    )


def _invalid(image: str, with_auth: bool) -> RunnerError:
    return InvalidRequest(f"image: {image!r} is not a valid image reference", field="image")


def _refused_access(image: str, with_auth: bool) -> RunnerError:
    if with_auth:
        return RegistryAuthFailed(
            f"auth_config: the registry refused access to {image!r} with these credentials: "
            "they were rejected or do not reach this image; check auth_config.username, "
            "auth_config.password (and serveraddress) and the image name",
            field="auth_config",
        )
    return RegistryAuthFailed(
        f"auth_config: the registry of {image!r} requires credentials for it (or does not "
        "have it); pass auth_config with a username and password",
        field="auth_config",
    )


def _hidden(image: str, with_auth: bool) -> RunnerError:
    """Docker Hub's answer for a repository it does not have, or will not show anonymously."""
    if with_auth:
        return _refused_access(image, with_auth)
    return ImageNotFound(
        f"image: {image!r} was not found, or is private: check the name, or pass "
        "auth_config with credentials for its registry",
        field="image",
    )


def _limited(image: str, with_auth: bool) -> RunnerError:
    return RegistryUnavailable(
        f"image: the registry of {image!r} is limiting pulls (too many requests); try again "
        "later, or pass auth_config: registries allow more to a logged-in user",
        field="image",
    )


def _missing(image: str, with_auth: bool) -> RunnerError:
    return ImageNotFound(
        f"image: {image!r} was not found in its registry; check the name and tag", field="image"
    )


def _absent_and_unreachable(image: str) -> RunnerError:
    return RegistryUnavailable(
        f"image: {image!r} is not on this engine, and its registry could not be reached; put "
        "the image on the engine (docker pull where the registry is reachable, or docker load), "
        "or check the registry address",
        field="image",
    )


def _unreachable(image: str, with_auth: bool) -> RunnerError:
    return RegistryUnavailable(
        f"image: the registry of {image!r} could not be reached; check the registry address, "
        "or use a local image with pull_policy 'missing' or 'never'",
        field="image",
    )


_PULL_FAILURES: tuple[tuple[tuple[str, ...], Callable[[str, bool], RunnerError]], ...] = (
    (("invalid reference format", "repository name must"), _invalid),
    (
        (
            "no basic auth credentials",
            "authorization failed",  # containerd's, after "pull access denied"
            "authentication required",
            "unauthorized",
            "incorrect username or password",
            "http 401",
        ),
        _refused_access,
    ),
    (("pull access denied", "repository does not exist"), _hidden),
    (("denied:", "access denied", "403 forbidden", "http 403"), _refused_access),
    (("toomanyrequests", "too many requests", "http 429"), _limited),
    (("manifest unknown", "not found", "manifest for", "name unknown", "http 404"), _missing),
    (
        (
            "no such host",
            "connection refused",
            "i/o timeout",
            "dial tcp",
            "timeout",
            "tls:",
            "server gave http response",
            "network is unreachable",
        ),
        _unreachable,
    ),
)
"""The engine's words for each kind of failure, in the order they are looked for: its messages
nest (containerd's "pull access denied ...: authorization failed: no basic auth credentials")."""


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
