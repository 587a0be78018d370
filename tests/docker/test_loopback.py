"""Runs without a network are started without the engine's network set-up (`loopback`): each
still has a network namespace of its own holding only a loopback that is up, `localhost`
resolves through the runner's read-only hosts file, and that file's volume is made again when
it disappears and goes when its runner stops."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import docker
import pytest

from backends.labels import HOSTS_ROLE, INSTANCE, ROLE
from tests.faults import EngineProxy, engine_fault
from tests.helpers import b64, run_body

PROBE = (
    "readlink /proc/self/ns/net; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; "
    "wget -qO- http://localhost:1/ 2>&1; cat /etc/hosts"
)


def hosts_volumes(docker_client: docker.DockerClient, instance: str) -> list[str]:
    found = docker_client.api.volumes(
        filters={"label": [f"{INSTANCE}={instance}", f"{ROLE}={HOSTS_ROLE}"]}
    )
    return [item["Name"] for item in found.get("Volumes") or []]


def test_a_run_without_a_network_has_a_loopback_only_in_a_namespace_of_its_own(client):
    result = client.post("/run", json=run_body("sh", "-c", PROBE)).json()
    namespace, interface, refused, *hosts = result["stdout"].splitlines()
    assert namespace != os.readlink("/proc/self/ns/net")  # not the host's
    assert interface == "lo"  # nothing else: no way out
    # `localhost` resolves, and the loopback is up (refused, not unreachable)
    assert "(127.0.0.1)" in refused and "refused" in refused, refused
    assert hosts[0] == "127.0.0.1\tlocalhost"


def test_the_hosts_file_cannot_be_changed_by_a_run(client):
    result = client.post("/run", json=run_body("sh", "-c", "echo 10.0.0.1 evil >> /etc/hosts"))
    assert result.json()["exit_code"] != 0
    assert "Read-only file system" in result.json()["stderr"]
    again = client.post("/run", json=run_body("cat", "/etc/hosts")).json()
    assert "evil" not in again["stdout"]


@pytest.mark.parametrize("key", ["/etc/hosts", "//etc/hosts", "/etc/./hosts"])
def test_a_run_may_bring_its_own_hosts_file(client, key):
    mine = b"127.0.0.1\tlocalhost mine.test\n"
    volumes = {key: {"type": "file", "content": b64(mine)}}
    result = client.post("/run", json=run_body("cat", "/etc/hosts", volumes=volumes)).json()
    assert result["stdout"] == mine.decode(), result


def test_runs_at_once_after_the_hosts_file_was_removed_all_run(app_client, docker_client):
    """Each finds the file gone at its create; one makes it again, the others use that one."""
    client = app_client()
    instance = client.app.state.service.settings.instance_id
    assert client.post("/run", json=run_body("true")).json()["exit_code"] == 0
    for _ in range(2):
        [volume] = hosts_volumes(docker_client, instance)
        docker_client.api.remove_volume(volume)
        with ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(
                    lambda _: client.post("/run", json=run_body("cat", "/etc/hosts")), range(4)
                )
            )
        assert [answer.status_code for answer in answers] == [200] * 4, answers[0].text
        assert all(a.json()["stdout"].startswith("127.0.0.1\tlocalhost") for a in answers)


def test_a_hosts_file_removed_behind_the_runner_s_back_is_made_again(
    app_client, docker_client, make_settings
):
    client = app_client()
    instance = client.app.state.service.settings.instance_id
    assert client.post("/run", json=run_body("true")).json()["exit_code"] == 0
    [volume] = hosts_volumes(docker_client, instance)
    docker_client.api.remove_volume(volume)  # as `docker volume prune` would: no container uses it
    result = client.post("/run", json=run_body("cat", "/etc/hosts")).json()
    assert result["stdout"].startswith("127.0.0.1\tlocalhost"), result
    # With RUNNER_WARM_POOL the run took a warm container, and the refill after its answer
    # makes the file again: wait for the pool (without one, there is nothing to wait for).
    assert client.app.state.service.backend.pool.wait_full(60)
    assert len(hosts_volumes(docker_client, instance)) == 1


def test_a_runner_s_hosts_file_goes_when_it_stops(app_client, docker_client):
    client = app_client()
    instance = client.app.state.service.settings.instance_id
    assert client.post("/run", json=run_body("true")).json()["exit_code"] == 0
    assert len(hosts_volumes(docker_client, instance)) == 1
    client.__exit__(None, None, None)
    assert hosts_volumes(docker_client, instance) == []


def test_a_run_on_a_named_network_takes_the_engine_s_way(app_client, own_network):
    client = app_client(allowed_networks=[own_network])
    body = run_body("sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort")
    result = client.post("/run", json={**body, "network": own_network}).json()
    assert result["stdout"].split() == ["eth0", "lo"], result


@engine_fault
def test_while_the_hosts_file_cannot_be_made_runs_take_the_engine_s_way(
    app_client, docker_client, tmp_path
):
    proxy = EngineProxy(tmp_path / "engine.sock")
    proxy.start()
    proxy.refused.append(b"/archive?path=%2Fv ")  # filling the hosts file's volume
    # No pool: a warm container made meanwhile keeps the engine's file until its run.
    client = app_client(docker_host=proxy.docker_host, warm_pool=[])
    command = "grep ' /etc/hosts ' /proc/self/mountinfo | cut -d' ' -f4; cat /etc/hosts"
    result = client.post("/run", json=run_body("sh", "-c", command)).json()
    source, *hosts = result["stdout"].splitlines()
    root = docker_client.info()["DockerRootDir"]
    assert source.startswith(f"{root}/containers/"), source  # the engine's own
    assert hosts[0] == "127.0.0.1\tlocalhost"
    proxy.refused.clear()
    client.app.state.service.backend.renew_lease()  # the next renewal makes it
    result = client.post("/run", json=run_body("sh", "-c", command)).json()
    assert "/oneoff-hosts-" in result["stdout"].splitlines()[0], result
