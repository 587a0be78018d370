"""The engine's messages lose its host paths before a caller sees them; the caller's own
container paths stay, so the message still says what to fix."""

from __future__ import annotations

import pytest

from backends.docker.errors import ENGINE_PATH, create_refused, pull_failure, scrub


@pytest.mark.parametrize(
    ("message", "kept"),
    [
        (
            "lstat /var/lib/docker/overlay2/6de4/merged/a: invalid argument",
            "lstat <engine path>: invalid argument",
        ),
        (
            'error mounting "/var/lib/docker/volumes/oneoff-1/_data/0" to rootfs at "/etc": mount '
            "/var/lib/docker/volumes/oneoff-1/_data/0:/etc (via /proc/self/fd/6), flags: 0x5000",
            'error mounting "<engine path>" to rootfs at "/etc": mount <engine path> '
            "(via <engine path>), flags: 0x5000",
        ),
        ("open /data/docker/containers/ab12/hostname: denied", "open <engine path>: denied"),
        ("/run/containerd/io.containerd.runtime.v2.task/moby/x/log.json", ENGINE_PATH),
        ("Cannot mkdir: /bin/sh is not a directory", "Cannot mkdir: /bin/sh is not a directory"),
    ],
)
def test_engine_paths_are_removed_and_container_paths_kept(message: str, kept: str) -> None:
    assert scrub(message) == kept


MARKER = "MARKER-from-the-registry"
PRIVATE = "127.0.0.1:5000/team/app:1"


@pytest.mark.parametrize(
    ("message", "with_auth", "status", "field"),
    [
        # Docker 20.10 (classic image store)
        (f'Head "http://{PRIVATE}": no basic auth credentials', False, 401, "auth_config"),
        ("unauthorized: authentication required", True, 401, "auth_config"),
        (f"manifest for {PRIVATE} not found: manifest unknown: {MARKER}", False, 404, "image"),
        (
            "error parsing HTTP 404 response body: invalid character 'M' looking for beginning "
            f'of value: "{MARKER}"',
            False,
            404,
            "image",
        ),
        (f'error parsing HTTP 403 response body: "{MARKER}"', True, 401, "auth_config"),
        (f'error parsing HTTP 429 response body: "{MARKER}"', False, 502, "image"),
        ("received unexpected HTTP status: 500 Internal Server Error", False, 502, "image"),
        (
            'Get "http://127.0.0.1:9/v2/": dial tcp 127.0.0.1:9: connect: refused',
            False,
            502,
            "image",
        ),
        ("invalid reference format: repository name must be lowercase", False, 422, "image"),
        (
            "pull access denied for team/app, repository does not exist or may require 'docker "
            "login': denied: requested access to the resource is denied",
            False,
            404,
            "image",
        ),
        # Docker 29 (containerd image store), and its distribution endpoint
        (
            f'failed to resolve reference "{PRIVATE}": pull access denied, repository does not '
            "exist or may require authorization: authorization failed: no basic auth credentials",
            False,
            401,
            "auth_config",
        ),
        (
            f'unknown: failed to resolve reference "{PRIVATE}": unexpected status from HEAD '
            f"request to http://{PRIVATE}: 401 Unauthorized",
            True,
            401,
            "auth_config",
        ),
        (f'failed to resolve reference "{PRIVATE}": {PRIVATE}: not found', False, 404, "image"),
        (f"denied: {MARKER}", True, 401, "auth_config"),
        (f"toomanyrequests: {MARKER}", False, 502, "image"),
        (f"unknown: {MARKER}", False, 502, "image"),
        (
            f'failed to resolve reference "{PRIVATE}": failed to do request: Head "https://'
            f'{PRIVATE}": tls: first record does not look like a TLS handshake',
            False,
            502,
            "image",
        ),
    ],
)
def test_a_registry_s_refusal_is_told_by_its_kind_never_by_its_words(
    message: str, with_auth: bool, status: int, field: str
) -> None:
    error = pull_failure(message, PRIVATE, with_auth=with_auth)
    assert (error.status_code, error.field) == (status, field)
    assert MARKER not in error.message and "HTTP" not in error.message
    assert error.message.startswith(f"{field}:")


@pytest.mark.parametrize(
    "message",
    [
        "Unknown runtime specified no-such-runtime",  # Docker 20.10
        "unknown or invalid runtime name: no-such-runtime",  # Docker 29
    ],
)
def test_a_runtime_the_engine_lacks_is_the_caller_s_to_fix(message: str) -> None:
    error = create_refused(message)
    assert error is not None
    assert (error.status_code, error.field) == (422, "runtime")
