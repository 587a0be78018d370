"""Pull policies and registry authentication, against the local registries."""

from __future__ import annotations

import docker
import pytest

from tests.helpers import (
    PRIVATE_IMAGE,
    PUBLIC_IMAGE,
    PUBLIC_REGISTRY,
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    TEST_IMAGE,
    TEST_REGISTRIES,
)


@pytest.fixture
def absent(docker_client):
    """Make sure an image is not on the engine before the test (and not after it)."""

    def remove(image: str) -> str:
        try:
            # Untags only: the test image shares its layers. Forced, because an engine with the
            # containerd image store (Docker 29's default) refuses (409) to remove the last name
            # of an image that a container still uses, such as the previous test's run while it
            # is removed in the background; the classic store's image has the test image's other
            # names, so it untags either way.
            docker_client.images.remove(image, force=True)
        except docker.errors.ImageNotFound:
            pass
        return image

    yield remove


def echo(image: str, **fields: object) -> dict[str, object]:
    return {"image": image, "command": ["echo", "pulled"], **fields}


def test_pull_always_pulls_from_the_registry(client, absent):
    response = client.post("/run", json=echo(absent(PUBLIC_IMAGE)))
    assert response.status_code == 200, response.text
    assert response.json()["stdout"] == "pulled\n"


def test_pull_missing_uses_a_local_image_without_a_registry(client):
    response = client.post("/run", json=echo(TEST_IMAGE, pull_policy="missing"))
    assert response.json()["stdout"] == "pulled\n"


def test_pull_missing_pulls_an_absent_image(client, absent):
    response = client.post("/run", json=echo(absent(PUBLIC_IMAGE), pull_policy="missing"))
    assert response.json()["stdout"] == "pulled\n"


def test_pull_never_with_an_absent_image_is_404(client, absent):
    response = client.post("/run", json=echo(absent(PUBLIC_IMAGE), pull_policy="never"))
    assert response.status_code == 404
    body = response.json()
    assert body["field"] == "image"
    assert "pull_policy" in body["message"]


def test_pull_always_of_a_local_only_image_fails_clearly(client):
    response = client.post("/run", json=echo(TEST_IMAGE, pull_policy="always"))
    assert response.status_code in (404, 502)
    assert response.json()["field"] == "image"


def test_image_missing_from_the_registry_is_404(client):
    response = client.post("/run", json=echo(f"{PUBLIC_REGISTRY}/oneoff-test/no-such-image:1"))
    assert response.status_code == 404
    assert response.json()["error"] == "image_not_found"


def test_private_image_pulls_with_credentials(client, absent):
    auth = {"username": REGISTRY_USER, "password": REGISTRY_PASSWORD}
    response = client.post("/run", json=echo(absent(PRIVATE_IMAGE), auth_config=auth))
    assert response.status_code == 200, response.text
    assert response.json()["stdout"] == "pulled\n"


def test_wrong_credentials_are_refused_without_echoing_them(client, absent):
    auth = {"username": REGISTRY_USER, "password": "wrong-password-123"}
    response = client.post("/run", json=echo(absent(PRIVATE_IMAGE), auth_config=auth))
    assert response.status_code == 401
    assert response.json()["error"] == "registry_auth_failed"
    assert "wrong-password-123" not in response.text


def test_private_image_without_credentials_asks_for_them(client, absent):
    response = client.post("/run", json=echo(absent(PRIVATE_IMAGE)))
    assert response.status_code == 401
    assert "auth_config" in response.json()["message"]


def test_credentials_make_the_pull_happen_even_when_the_image_is_cached(client, absent):
    good = {"username": REGISTRY_USER, "password": REGISTRY_PASSWORD}
    assert (
        client.post("/run", json=echo(absent(PRIVATE_IMAGE), auth_config=good)).status_code == 200
    )
    bad = {"username": REGISTRY_USER, "password": "nope-nope"}
    cached = client.post("/run", json=echo(PRIVATE_IMAGE, pull_policy="missing", auth_config=bad))
    assert cached.status_code == 401


def test_credentials_never_reach_the_logs(client, absent, caplog):
    auth = {"username": REGISTRY_USER, "password": "leaky-secret-42"}
    with caplog.at_level("DEBUG"):
        client.post("/run", json=echo(absent(PRIVATE_IMAGE), auth_config=auth))
        client.post("/run", json=echo(PUBLIC_IMAGE, auth_config=auth, command=["/nope"]))
    assert caplog.records
    assert "leaky-secret-42" not in caplog.text


def test_pull_missing_of_an_absent_image_with_its_registry_down_says_both(app_client):
    """The request already said `missing`: the answer says what happened and what to do."""
    absent = "127.0.0.1:9/oneoff-test/absent:1"  # no registry listens on port 9
    client = app_client(allowed_registries=[*TEST_REGISTRIES, "127.0.0.1:9"])
    response = client.post("/run", json=echo(absent, pull_policy="missing"))
    assert response.status_code == 502, response.text
    body = response.json()
    assert body["field"] == "image"
    assert "is not on this engine, and its registry could not be reached" in body["message"]
    assert "pull_policy" not in body["message"]
