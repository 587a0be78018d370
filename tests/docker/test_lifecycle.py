"""Nothing leaks, whatever way a run ends; leftovers of a crash are reaped; engine down is 503."""

from __future__ import annotations

import json
import socket
import tarfile
import time
import uuid

import docker
import pytest

from api_app import create_app
from backends.docker.backend import DockerBackend
from backends.labels import DEADLINE, INSTANCE, MANAGED, OWNER, ROLE, RUN_ID
from runner.errors import BackendUnavailable
from tests.docker.watching import Events
from tests.faults import engine_fault
from tests.helpers import (
    PUBLIC_REGISTRY,
    TEST_IMAGE,
    b64,
    managed_objects,
    remove_objects_of,
    run_body,
    serving,
    tar_gz,
)

CONTENT = {"/in.txt": {"type": "file", "content": b64(b"x")}, "/out": {"type": "directory"}}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"image": f"{PUBLIC_REGISTRY}/oneoff-test/absent:1", "volumes": CONTENT}, 404),
        (run_body("/no/such/program", volumes=CONTENT), 422),
        (run_body("true", volumes=CONTENT, network="no-such-network"), 404),
        (run_body("true", volumes={"/d": {"type": "directory", "content": b64(b"bad")}}), 422),
        (run_body("true", volumes={**CONTENT, "/v": {"type": "volume", "name": "absent-v"}}), 404),
        (run_body("sleep", "30", volumes=CONTENT, timeout_seconds=1), 200),
        (run_body("sh", "-c", "exit 7", volumes=CONTENT), 200),
    ],
    ids=[
        "pull-failure",
        "start-failure",
        "create-failure",
        "bad-archive",
        "missing-volume",
        "timeout",
        "non-zero-exit",
    ],
)
def test_every_way_a_run_ends_leaves_nothing(app_client, docker_client, body, status):
    client = app_client(allowed_networks=["none", "no-such-network"], allowed_volumes=["absent-v"])
    instance = client.app.state.service.settings.instance_id
    response = client.post("/run", json=body)
    assert response.status_code == status, response.text
    cleanup = client.app.state.service.backend.containers.cleanup
    assert cleanup.idle(60)  # after an answer, in the background
    assert managed_objects(docker_client, instance) == []


@engine_fault
def test_engine_down_is_503_and_the_service_keeps_serving(app_client, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/oneoff-no-such-docker.sock")
    client = app_client()
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json()["status"] == "unavailable"
    assert "DOCKER_HOST" in health.json()["message"]
    run = client.post("/run", json=run_body("true"))
    assert run.status_code == 503
    assert run.json()["error"] == "backend_unavailable"
    assert client.get("/health").status_code == 503


def test_a_closed_backend_opens_no_engine_client_for_threads_still_at_work(make_settings):
    """A thread still at work when the runner stops (a scratch sampler, a watcher) gets a 503,
    not a new client whose sockets nobody closes."""
    backend = DockerBackend(make_settings())
    assert backend.health().status == "ok"  # its client is open
    backend.close()
    with pytest.raises(BackendUnavailable, match="shutting down"):
        backend.containers.api  # noqa: B018 - the property opens the client
    with pytest.raises(BackendUnavailable, match="shutting down"):
        backend.containers.streams  # noqa: B018


def test_health_reports_the_engine_version(client, docker_client):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["backend"] == "docker"
    assert body["version"] == docker_client.version()["Version"]


def leftover(
    docker_client, instance: str, deadline: float, owner: str | None = None
) -> tuple[str, str]:
    run_id = uuid.uuid4().hex[:16]
    labels = {
        MANAGED: "true",
        RUN_ID: run_id,
        INSTANCE: instance,
        DEADLINE: str(int(deadline)),
        ROLE: "run",
        **({OWNER: owner} if owner else {}),
    }
    volume = docker_client.volumes.create(f"oneoff-{run_id}", labels=labels)
    container = docker_client.containers.create(
        TEST_IMAGE, ["sleep", "600"], labels=labels, network_mode="none"
    )
    try:
        container.start()
    except docker.errors.APIError as exc:  # (NotFound is one)
        if exc.status_code not in (404, 409):
            raise  # not "removed, or marked for removal": another runner's reaper came first
    return container.name, volume.name


def test_startup_reaps_what_runners_without_a_lease_left_and_expired_objects_only(
    app_client, docker_client, make_settings
):
    """A live runner with the very same instance id keeps its runs; ownership is the lease."""
    settings = make_settings()
    live = DockerBackend(settings)
    events = Events(docker_client, settings.instance_id)
    try:
        live.renew_lease()
        kept = leftover(
            docker_client, settings.instance_id, time.time() + 3600, live.containers.lease.owner
        )
        gone = leftover(docker_client, settings.instance_id, time.time() + 3600, owner="0" * 32)
        expired = leftover(docker_client, settings.instance_id, time.time() - 1)
        app_client(instance_id=settings.instance_id, reap_interval_seconds=3600)
        # Removed at the app's startup, or being removed by another runner's reaper (then the
        # startup's removal counted it as done): nothing of them runs any more
        label = {"label": f"{INSTANCE}={settings.instance_id}"}
        states = {
            (item.get("Names") or [""])[0].lstrip("/"): item["State"]
            for item in docker_client.api.containers(all=True, filters=label)
        }
        assert states.get(gone[0], "removing") == states.get(expired[0], "removing") == "removing"
        events.until_removed([*gone, *expired])
        assert set(kept) <= set(managed_objects(docker_client, settings.instance_id))
    finally:
        events.close()
        live.close()
        remove_objects_of(docker_client, settings.instance_id)


@pytest.fixture
def live_server(make_settings):
    settings = make_settings()
    with serving(create_app(settings)) as port:
        yield settings, port


def test_client_disconnect_mid_run_kills_and_removes_everything(live_server, docker_client):
    settings, port = live_server
    events = docker_client.api.events(
        decode=True, until=int(time.time()) + 40, filters={"type": ["container", "volume"]}
    )
    body = json.dumps(run_body("sleep", "60", volumes=CONTENT, timeout_seconds=120)).encode()
    request = (
        f"POST /run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    started = time.monotonic()
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall(request)
    run_id = None
    for event in events:
        attributes = event.get("Actor", {}).get("Attributes", {})
        if event["Type"] == "container" and attributes.get(INSTANCE) == settings.instance_id:
            if event["Action"] == "start" and attributes.get(ROLE) == "run":
                run_id = attributes[RUN_ID]
                connection.close()
        if run_id and event["Type"] == "container" and event["Action"] == "destroy":
            if attributes.get(RUN_ID) == run_id and attributes.get(ROLE) == "run":
                break
    else:
        pytest.fail("the run's container was not removed after the client disconnected")
    events.close()
    assert time.monotonic() - started < 40
    assert managed_objects(docker_client, settings.instance_id) == []


def test_directory_content_with_many_files_round_trips(client):
    files = {f"f{i:03}.txt": str(i).encode() for i in range(200)}
    volumes = {"/many": {"type": "directory", "content": b64(tar_gz(files))}}
    result = client.post("/run", json=run_body("sh", "-c", "ls /many | wc -l", volumes=volumes))
    assert result.json()["stdout"].strip() == "200"


def test_content_the_engine_refuses_part_way_leaves_nothing(app_client, docker_client):
    """The engine unpacks 20 MB, then refuses a name over 255 bytes: the partly filled run
    volume is gone before the answer."""
    client = app_client()
    instance = client.app.state.service.settings.instance_id
    too_long = tarfile.TarInfo("n" * 256)
    archive = tar_gz({"big.bin": bytes(20 * 1024 * 1024)}, extra=[too_long])
    body = run_body("true", volumes={"/d": {"type": "directory", "content": b64(archive)}})
    response = client.post("/run", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "volumes"
    assert managed_objects(docker_client, instance) == []
