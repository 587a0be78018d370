"""POST /images/pull against the local registries and the real engine: the same policy,
credentials and refusals as a run's pull."""

from __future__ import annotations

import docker
import pytest

from tests.helpers import (
    PRIVATE_REGISTRY,
    PUBLIC_REGISTRY,
    REGISTRY_USER,
    TEST_IMAGE,
    TEST_REGISTRIES,
)
from tests.registries import CREDENTIALS, Push


def test_an_image_is_pulled_and_is_on_the_engine_afterwards(
    client, unique_image: Push, docker_client
):
    image = unique_image()
    response = client.post("/images/pull", json={"image": image})
    assert response.status_code == 200, response.text
    pulled = response.json()
    assert (pulled["status"], pulled["image"]) == ("pulled", image)
    assert docker_client.images.get(image).id == pulled["id"]
    assert pulled["size"] > 1_000_000


def test_a_private_image_is_pulled_with_credentials(client, unique_image: Push, docker_client):
    image = unique_image(private=True)
    response = client.post("/images/pull", json={"image": image, "auth_config": CREDENTIALS})
    assert response.status_code == 200, response.text
    assert docker_client.images.get(image).id == response.json()["id"]


def test_wrong_credentials_are_a_401_that_never_echoes_them(
    client, unique_image: Push, docker_client
):
    image = unique_image(private=True)
    auth = {"username": REGISTRY_USER, "password": "not-the-pass-771"}
    response = client.post("/images/pull", json={"image": image, "auth_config": auth})
    assert response.status_code == 401
    assert response.json()["field"] == "auth_config"
    assert "not-the-pass-771" not in response.text
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(image)


def test_a_private_image_without_credentials_asks_for_them(client, unique_image: Push):
    response = client.post("/images/pull", json={"image": unique_image(private=True)})
    assert response.status_code == 401
    assert "auth_config" in response.json()["message"]


def test_an_image_the_registry_does_not_have_is_a_404(client):
    response = client.post("/images/pull", json={"image": f"{PUBLIC_REGISTRY}/oneoff-test/nope:1"})
    assert response.status_code == 404
    assert response.json()["field"] == "image"


def test_an_unreachable_registry_is_a_502(app_client):
    client = app_client(allowed_registries=[*TEST_REGISTRIES, "127.0.0.1:9"])
    response = client.post("/images/pull", json={"image": "127.0.0.1:9/oneoff-test/x:1"})
    assert response.status_code == 502
    assert response.json()["field"] == "image"


def test_an_image_outside_the_allow_list_is_a_403_before_any_pull(app_client, unique_image: Push):
    client = app_client(allowed_images=[f"{PUBLIC_REGISTRY}/"])
    image = unique_image(private=True)
    response = client.post("/images/pull", json={"image": image, "auth_config": CREDENTIALS})
    assert response.status_code == 403
    assert "RUNNER_ALLOWED_IMAGES" in response.json()["message"]
    assert PRIVATE_REGISTRY in image


@pytest.mark.parametrize(
    "body",
    [{}, {"image": ""}, {"image": TEST_IMAGE, "tag": "x"}, {"image": "a" * 300 + ":1"}],
)
def test_a_bad_body_is_a_422_naming_the_field(client, body):
    response = client.post("/images/pull", json=body)
    assert response.status_code == 422
    assert response.json()["field"] in ("image", "tag")
