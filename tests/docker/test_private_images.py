"""A private image one tenant pulled with credentials is not another's to run or see, whatever
the pull policy; credentials the registry accepts (checked without a pull) or an anonymous pull
that succeeds open it up. Against the local registries and the real engine, through REST; the
grants live on the engine, so they hold across a restart and for another runner on it."""

from __future__ import annotations

import time
from collections.abc import Callable

import docker
import pytest
from fastapi.testclient import TestClient

from api_app import create_app
from backends.labels import IMAGE, ROLE
from runner.run_status import FINISHED_STATES
from tests.helpers import PRIVATE_REGISTRY, PUBLIC_REGISTRY, REGISTRY_USER, LocalClient, until
from tests.registries import CREDENTIALS, Push

A = {"Authorization": "Bearer tok-alice"}
B = {"Authorization": "Bearer tok-bob"}
TOKENS = ["alice:tok-alice", "tok-bob"]
WRONG = {"username": REGISTRY_USER, "password": "not-it-5521"}

Runner = Callable[..., TestClient]


@pytest.fixture
def runner(app_client) -> TestClient:  # type: ignore[no-untyped-def]
    """A runner with two tenants, Alice and Bob."""
    return app_client(api_tokens=TOKENS)  # type: ignore[no-any-return]


def run(client: TestClient, headers: dict[str, str], image: str, **fields: object):  # type: ignore[no-untyped-def]
    body = {"image": image, "command": ["echo", "ran"], **fields}
    return client.post("/run", json=body, headers=headers)


def pulled_by_alice(client: TestClient, image: str) -> str:
    """Alice pulls the image with her credentials; its id."""
    response = client.post(
        "/images/pull", json={"image": image, "auth_config": CREDENTIALS}, headers=A
    )
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def listed(client: TestClient, headers: dict[str, str]) -> set[str]:
    return {image["id"] for image in client.get("/images", headers=headers).json()}


def pulls_since(docker_client: docker.DockerClient, started: int, image: str) -> list[object]:
    """The engine's pull events of the image since `started` (ns)."""
    events = docker_client.api.events(
        since=started // 10**9 - 1,
        until=int(time.time()) + 1,
        filters={"type": "image", "event": "pull"},
        decode=True,
    )
    return [event for event in events if event["timeNano"] >= started and image in str(event)]


def answer(response, image: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """Status and message, the image's name left out: what tells one refusal from another."""
    return response.status_code, response.json()["message"].replace(image, "<image>")


def test_another_tenant_s_private_image_is_absent_for_every_pull_policy(
    runner: TestClient, unique_image: Push
) -> None:
    image = unique_image(private=True)
    never_pulled = unique_image(private=True)
    image_id = pulled_by_alice(runner, image)
    assert run(runner, A, image, pull_policy="never").json()["stdout"] == "ran\n"
    for policy in ("never", "missing", "always"):
        bobs = run(runner, B, image, pull_policy=policy)
        assert bobs.status_code in (401, 404), bobs.text
        assert answer(bobs, image) == answer(
            run(runner, B, never_pulled, pull_policy=policy), never_pulled
        )
    by_id = run(runner, B, image_id, pull_policy="never")
    assert by_id.status_code == 404, by_id.text
    assert image_id in listed(runner, A)
    assert image_id not in listed(runner, B)
    assert runner.get("/images", params={"reference": image}, headers=B).json() == []


def test_an_async_run_of_it_fails_as_one_of_an_absent_image(
    app_client,
    instance: str,
    unique_image: Push,  # type: ignore[no-untyped-def]
) -> None:
    runner = app_client(api_tokens=TOKENS, instance_id=instance)  # its run records are removed
    image, never_pulled = unique_image(private=True), unique_image(private=True)
    pulled_by_alice(runner, image)

    def failure(reference: str) -> str:
        body = {"image": reference, "command": ["echo", "ran"], "pull_policy": "never"}
        started = runner.post("/runs", json=body, headers=B)
        assert started.status_code == 202, started.text
        path = f"/runs/{started.json()['run_id']}"
        until(lambda: runner.get(path, headers=B).json()["state"] in FINISHED_STATES, 60)
        status = runner.get(path, headers=B).json()
        assert status["state"] == "failed", status
        return str(status["error"]).replace(reference, "<image>")

    assert failure(image) == failure(never_pulled)


def test_credentials_the_registry_accepts_grant_the_image_without_a_pull(
    runner: TestClient, unique_image: Push, docker_client: docker.DockerClient
) -> None:
    image = unique_image(private=True)
    image_id = pulled_by_alice(runner, image)
    assert run(runner, B, image, pull_policy="never", auth_config=WRONG).status_code == 401
    started = time.time_ns()
    with_credentials = run(runner, B, image, pull_policy="never", auth_config=CREDENTIALS)
    assert with_credentials.status_code == 200, with_credentials.text
    assert pulls_since(docker_client, started, image) == []
    assert run(runner, B, image, pull_policy="never").json()["stdout"] == "ran\n"
    assert image_id in listed(runner, B)


def test_grants_hold_across_a_restart_and_for_another_runner(
    make_settings,
    unique_image: Push,
    app_client,  # type: ignore[no-untyped-def]
) -> None:
    image = unique_image(private=True)
    settings = make_settings(api_tokens=TOKENS)
    with LocalClient(create_app(settings)) as first:
        pulled_by_alice(first, image)

    def holds(client: TestClient) -> None:
        assert run(client, A, image, pull_policy="never").status_code == 200
        assert run(client, B, image, pull_policy="never").status_code == 404

    with LocalClient(create_app(settings)) as restarted:
        holds(restarted)
    holds(app_client(api_tokens=TOKENS))  # another runner, on the same engine


def test_an_anonymous_pull_makes_an_image_public_after_a_credentialed_one(
    runner: TestClient, unique_image: Push
) -> None:
    image = unique_image()  # in the anonymous registry, which takes any credentials too
    pulled_by_alice(runner, image)
    assert run(runner, B, image, pull_policy="never").status_code == 404
    assert runner.post("/images/pull", json={"image": image}, headers=B).status_code == 200
    assert run(runner, B, image, pull_policy="never").json()["stdout"] == "ran\n"
    assert run(runner, A, image, pull_policy="never").json()["stdout"] == "ran\n"


def test_and_before_it_the_credentialed_pull_keeps_the_image_public(
    runner: TestClient, unique_image: Push
) -> None:
    """Bringing a public image's twin from a private registry takes it from no one: a tenant
    cannot lock others out of a public image by pulling a private copy of it; a fresh private
    image pulled beside it stays private."""
    private = unique_image(private=True, mirrored=True)
    public = private.replace(PRIVATE_REGISTRY, PUBLIC_REGISTRY, 1)
    public_id = runner.post("/images/pull", json={"image": public}, headers=B).json()["id"]
    assert pulled_by_alice(runner, private) == public_id
    assert run(runner, B, public, pull_policy="never").json()["stdout"] == "ran\n"
    assert run(runner, B, private, pull_policy="never").json()["stdout"] == "ran\n"
    fresh = unique_image(private=True)
    pulled_by_alice(runner, fresh)
    assert run(runner, B, fresh, pull_policy="never").status_code == 404


def test_grants_of_images_no_longer_on_the_engine_are_reaped(
    runner: TestClient, unique_image: Push, docker_client: docker.DockerClient
) -> None:
    image = unique_image(private=True)
    image_id = pulled_by_alice(runner, image)

    def grants() -> list[str]:
        selector = {"label": [f"{ROLE}=grant", f"{IMAGE}={image_id}"]}
        return [
            item["Name"] for item in docker_client.api.volumes(filters=selector)["Volumes"] or []
        ]

    assert len(grants()) == 1
    docker_client.images.remove(image, force=True)
    runner.app.state.service.backend.reap_orphans()
    assert grants() == []
