"""A run reaches its own containers and nothing else: no host path, no engine socket, no volume
it was not given, through any volume form, even under the most permissive configuration."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator

import docker
import pytest

from backends.docker.backend import DockerBackend
from backends.labels import DELIVERED_ROLE, INSTANCE, LEASE_ROLE, OWNER, ROLE, RUN_ID
from runner.errors import RunnerError
from runner.settings import Settings
from runner.tenancy import LOCAL
from tests.helpers import b64, instance_id, managed_objects, run_body, tar_gz

HOST_BIND = {"type": "none", "o": "bind", "device": "/"}
PERMISSIVE = {
    "allowed_host_paths": ["/"],
    "allowed_volumes": ["*"],
    "allowed_volume_options": {"type": ["none", "tmpfs"], "o": ["bind"], "device": ["/"]},
}


@pytest.fixture
def outside_volume(docker_client: docker.DockerClient) -> Iterator[str]:
    """A volume someone else made on the engine: a bind of the host's root."""
    name = f"oneoff-test-outside-{uuid.uuid4().hex[:8]}"
    docker_client.volumes.create(
        name, driver="local", driver_opts=HOST_BIND, labels={INSTANCE: instance_id("outside")}
    )
    yield name
    docker_client.volumes.get(name).remove(force=True)


@pytest.fixture
def plain_volume(docker_client: docker.DockerClient) -> Iterator[str]:
    """Another application's data volume, holding a secret."""
    name = f"oneoff-test-app-data-{uuid.uuid4().hex[:8]}"
    docker_client.volumes.create(name, labels={INSTANCE: instance_id("outside")})
    docker_client.containers.run(
        "oneoff-test/busybox:latest",
        ["sh", "-c", "echo app-secret > /v/secret"],
        volumes={name: {"bind": "/v", "mode": "rw"}},
        network_mode="none",
        remove=True,
    )
    yield name
    docker_client.volumes.get(name).remove(force=True)


@pytest.mark.parametrize(
    ("driver", "options"),
    [
        (None, HOST_BIND),
        ("local", {"type": "none", "o": "bind", "device": "/var/run"}),
        (None, {"o": "rbind", "device": "/"}),
        (None, {"type": "nfs", "o": "addr=127.0.0.1", "device": ":/export"}),
        ("vieux/sshfs", {}),
    ],
)
def test_create_volume_refuses_drivers_and_options_the_operator_did_not_allow(
    client, docker_client, driver, options
):
    name = f"oneoff-test-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "driver": driver, "driver_opts": options}
    response = client.post("/volume", json=body)
    assert response.status_code == 403, response.text
    assert response.json()["field"].startswith(("driver", "driver_opts"))
    assert (
        "RUNNER_ALLOWED_VOLUME" in response.json()["message"]
        or "never" in (response.json()["message"])
    )
    assert docker_client.volumes.list(filters={"name": name}) == []


def test_a_host_bind_volume_is_refused_even_when_its_options_are_allowed(app_client, docker_client):
    client = app_client(**PERMISSIVE)
    name = f"oneoff-test-{uuid.uuid4().hex[:8]}"
    response = client.post("/volume", json={"name": name, "driver_opts": HOST_BIND})
    assert response.status_code == 403
    assert response.json()["field"] == "driver_opts"
    assert docker_client.volumes.list(filters={"name": name}) == []


def test_allowed_tmpfs_volumes_are_created_and_mounted(app_client, docker_client):
    options = {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    client = app_client(allowed_volume_options={key: [value] for key, value in options.items()})
    name = f"oneoff-test-{uuid.uuid4().hex[:8]}"
    try:
        assert (
            client.post("/volume", json={"name": name, "driver_opts": options}).status_code == 200
        )
        body = run_body(
            "grep", " /v ", "/proc/mounts", volumes={"/v": {"type": "volume", "name": name}}
        )
        result = client.post("/run", json=body).json()
        assert result["stdout"].startswith("tmpfs /v tmpfs"), result
    finally:
        docker_client.volumes.get(name).remove(force=True)


def test_a_volume_the_runner_did_not_make_is_refused(client, plain_volume, docker_client):
    body = run_body("cat", "/v/secret", volumes={"/v": {"type": "volume", "name": plain_volume}})
    response = client.post("/run", json=body)
    assert response.status_code == 403
    assert "RUNNER_ALLOWED_VOLUMES" in response.json()["message"]
    missing = run_body("true", volumes={"/v": {"type": "volume", "name": "oneoff-test-nothing"}})
    refused = client.post("/run", json=missing)
    assert refused.status_code == 403  # the same answer: it confirms nothing


def test_a_volume_the_operator_allows_by_name_is_mounted(app_client, plain_volume):
    client = app_client(allowed_volumes=["oneoff-test-app-data-*"])
    body = run_body("cat", "/v/secret", volumes={"/v:ro": {"type": "volume", "name": plain_volume}})
    assert client.post("/run", json=body).json()["stdout"] == "app-secret\n"


def test_an_own_volume_is_mounted(client, docker_client):
    name = f"oneoff-test-{uuid.uuid4().hex[:8]}"
    archive = tar_gz({"a.txt": b"mine"})
    try:
        assert (
            client.post("/volume", json={"name": name, "content": b64(archive)}).status_code == 200
        )
        body = run_body("cat", "/v/a.txt", volumes={"/v": {"type": "volume", "name": name}})
        assert client.post("/run", json=body).json()["stdout"] == "mine"
    finally:
        docker_client.volumes.get(name).remove(force=True)


@pytest.mark.parametrize(
    "volume",
    [
        {"type": "host", "host_path": "/"},
        {"type": "host", "host_path": "/var/run/docker.sock"},
        {"type": "host", "host_path": "//var/run/docker.sock"},
        {"type": "host", "host_path": "/run/../var/./run"},
        {"type": "host", "host_path": "/proc/1/root"},
        {"type": "host", "host_path": "/var/lib/docker/volumes"},
        {"type": "host", "host_path": "/sys/fs/cgroup"},
        {"type": "host", "host_path": "/dev"},
        {"type": "volume", "name": "OUTSIDE"},
    ],
)
def test_no_volume_form_reaches_the_host_even_when_the_operator_allows_everything(
    app_client, docker_client, outside_volume, volume
):
    client = app_client(**PERMISSIVE)
    if volume.get("name") == "OUTSIDE":
        volume = {**volume, "name": outside_volume}
    body = run_body("ls", "/h", volumes={"/h": volume})
    response = client.post("/run", json=body)
    assert response.status_code == 403, response.text
    assert "never mounted" in response.json()["message"]
    instance = client.app.state.service.settings.instance_id
    assert managed_objects(docker_client, instance) == []


def test_the_host_bind_attack_is_refused_end_to_end(client, docker_client):
    """The issue's attack: make a bind of / through the API, then mount it in a run."""
    name = f"oneoff-test-{uuid.uuid4().hex[:8]}"
    made = client.post("/volume", json={"name": name, "driver_opts": HOST_BIND})
    assert made.status_code == 403
    body = run_body("ls", "/host/var/run", volumes={"/host": {"type": "volume", "name": name}})
    assert client.post("/run", json=body).status_code == 403
    assert docker_client.volumes.list(filters={"name": name}) == []


def test_the_runner_s_own_volumes_are_never_mounted_even_when_the_operator_allows_every_name(
    app_client, docker_client
):
    """A run without a network sees where its hosts file comes from (/proc/self/mountinfo names
    the runner's volume); mounted writable, it would let one tenant's run write what the next
    one reads. The same holds for a run's content volume and the runner's lease."""
    client = app_client(**PERMISSIVE, lease_seconds=3600)  # its lease is not renewed meanwhile
    mounts = client.post("/run", json=run_body("cat", "/proc/self/mountinfo")).json()["stdout"]
    [hosts_volume] = re.findall(r"/volumes/(oneoff-hosts-[0-9a-f]+)/_data", mounts)
    instance = client.app.state.service.settings.instance_id
    [lease] = docker_client.api.volumes(
        filters={"label": [f"{INSTANCE}={instance}", f"{ROLE}={LEASE_ROLE}"]}
    )["Volumes"]
    for name in (hosts_volume, lease["Name"]):
        body = run_body(
            "sh",
            "-c",
            "echo 10.0.0.1 evil >> /v/hosts",
            volumes={"/v": {"type": "volume", "name": name}},
        )
        response = client.post("/run", json=body)
        assert response.status_code == 403, response.text
        assert response.json()["field"] == "volumes['/v'].name"
        assert "runner made for itself" in response.json()["message"]
    hosts = client.post("/run", json=run_body("cat", "/etc/hosts")).json()["stdout"]
    assert "evil" not in hosts


def test_a_volume_of_the_next_lease_s_name_that_is_not_the_runner_s_is_never_taken_for_it(
    docker_client,
):
    """Callers cannot take the runner's names (a 422 on POST /volume); anyone else on the
    engine who does (the engine answers a create of an existing name with that volume) gets
    a renewal that fails, and the runner keeps the lease it holds."""
    backend = DockerBackend(Settings(instance_id=instance_id("squat")))

    def leases() -> list[str]:
        selector = [f"{OWNER}={backend.containers.lease.owner}", f"{ROLE}={LEASE_ROLE}"]
        return [
            v["Name"] for v in docker_client.api.volumes(filters={"label": selector})["Volumes"]
        ]

    try:
        backend.containers.lease.renew()
        assert leases() == [f"oneoff-lease-{backend.containers.lease.owner}-1"]
        squat = f"oneoff-lease-{backend.containers.lease.owner}-2"
        docker_client.api.create_volume(squat, labels={INSTANCE: instance_id("squat")})
        with pytest.raises(RunnerError, match="is not this runner's"):
            backend.containers.lease.renew()
        assert leases() == [f"oneoff-lease-{backend.containers.lease.owner}-1"]
        docker_client.api.remove_volume(squat)
    finally:
        backend.close()


def test_a_volume_of_a_delivered_mark_s_name_is_never_taken_for_the_mark(docker_client):
    """Anyone on the engine (callers cannot: a 422) who makes `oneoff-<run>-delivered` first
    does not mark the run delivered: the mark fails, and a real mark made twice stands."""
    backend = DockerBackend(Settings(instance_id=instance_id("squat-mark")))
    squatted, marked = uuid.uuid4().hex[:16], uuid.uuid4().hex[:16]
    squat = f"oneoff-{squatted}-delivered"
    try:
        docker_client.api.create_volume(squat, labels={INSTANCE: instance_id("squat-mark")})
        with pytest.raises(RunnerError, match="is not this runner's"):
            backend.mark_delivered(squatted, LOCAL.label)
        backend.mark_delivered(marked, LOCAL.label)
        backend.mark_delivered(marked, LOCAL.label)  # by another runner, say: it stands
        made = docker_client.api.inspect_volume(f"oneoff-{marked}-delivered")["Labels"]
        assert (made[ROLE], made[RUN_ID]) == (DELIVERED_ROLE, marked)
    finally:
        for name in (squat, f"oneoff-{marked}-delivered"):
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.api.remove_volume(name)
        backend.close()
