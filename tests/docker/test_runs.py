"""Running containers: the classic example, arguments, environment, output, limits."""

from __future__ import annotations

import base64

from tests.helpers import PUBLIC_IMAGE, b64, run_body, untar_gz

CLASSIC_SCRIPT = b'#!/bin/ash\necho "Hello, World!" > /app/data/test.txt\n'


def test_classic_example_returns_the_directory_the_script_wrote(client):
    body = {
        "image": PUBLIC_IMAGE,
        "command": ["/test.sh"],
        "volumes": {
            "/test.sh:ro": {"type": "file", "content": b64(CLASSIC_SCRIPT), "mode": "0755"},
            "/app/data": {"type": "directory", "response": True},
        },
    }
    response = client.post("/run", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "success"
    assert result["exit_code"] == 0
    returned = result["volumes"]["/app/data"]
    assert returned["type"] == "directory"
    assert untar_gz(base64.b64decode(returned["content"])) == {"test.txt": b"Hello, World!\n"}


def test_result_has_every_documented_field(client):
    result = client.post("/run", json=run_body("true")).json()
    assert set(result) == {
        "run_id",
        "status",
        "exit_code",
        "stdout",
        "stderr",
        "stdout_truncated",
        "stderr_truncated",
        "timed_out",
        "oom_killed",
        "scratch_exceeded",
        "message",
        "streams_merged",
        "volumes",
        "execution_time",
    }
    assert result["execution_time"] > 0


def test_stdout_and_stderr_are_captured_separately(client):
    result = client.post("/run", json=run_body("sh", "-c", "echo out; echo err >&2")).json()
    assert (result["stdout"], result["stderr"]) == ("out\n", "err\n")


def test_non_zero_exit_is_a_normal_result(client):
    response = client.post("/run", json=run_body("sh", "-c", "exit 3"))
    assert response.status_code == 200
    assert response.json()["status"] == "error: 3"
    assert response.json()["exit_code"] == 3


def test_command_as_one_string_is_split_like_a_shell(client):
    result = client.post("/run", json=run_body(command="echo 'two words' three")).json()
    assert result["stdout"] == "two words three\n"


def test_entrypoint_and_command_combine_like_docker(client):
    body = run_body(entrypoint=["/bin/echo", "from-entrypoint"], command=["from-command"])
    assert client.post("/run", json=body).json()["stdout"] == "from-entrypoint from-command\n"


def test_env_vars_accept_str_int_and_bool(client):
    body = run_body(
        "sh", "-c", 'echo "$NAME $COUNT $FLAG"', env_vars={"NAME": "x", "COUNT": 3, "FLAG": True}
    )
    assert client.post("/run", json=body).json()["stdout"] == "x 3 true\n"


def test_working_dir_and_user_apply(client):
    body = run_body("sh", "-c", "pwd; id -u; id -g", working_dir="/tmp", user="65534:65534")
    assert client.post("/run", json=body).json()["stdout"] == "/tmp\n65534\n65534\n"


def test_timeout_kills_the_container_and_says_so(client):
    body = run_body("sleep", "60", timeout_seconds=1)
    result = client.post("/run", json=body).json()
    assert result["status"] == "timeout"
    assert result["timed_out"] is True
    assert result["execution_time"] < 30


def test_output_beyond_the_cap_is_cut_and_flagged(client, module_settings):
    cap = module_settings.max_output_bytes
    body = run_body("sh", "-c", "yes abcdefgh | head -c 20000000; yes e | head -c 300000 >&2")
    result = client.post("/run", json=body).json()
    assert result["status"] == "success"
    assert len(result["stdout"]) == cap and result["stdout_truncated"] is True
    assert len(result["stderr"]) == cap and result["stderr_truncated"] is True


def test_output_within_the_cap_is_not_flagged(client):
    result = client.post("/run", json=run_body("echo", "small")).json()
    assert result["stdout_truncated"] is False and result["stderr_truncated"] is False


def test_non_utf8_output_comes_back_with_replacement_characters(client):
    body = run_body("sh", "-c", r"printf 'ok \377\376 end'")
    response = client.post("/run", json=body)
    assert response.status_code == 200
    assert response.json()["stdout"] == "ok \ufffd\ufffd end"


def test_memory_limit_applies_and_oom_is_reported(client):
    body = run_body(
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        memory="32m",
    )
    result = client.post("/run", json=body).json()
    assert result["oom_killed"] is True
    assert "survived" not in result["stdout"]


def test_limits_reach_the_container(client, docker_client):
    body = run_body(
        "sh",
        "-c",
        "cd /sys/fs/cgroup; cat pids.max memory.max 2>/dev/null || "
        "cat pids/pids.max memory/memory.limit_in_bytes",
        memory="64m",
    )
    pids, memory = client.post("/run", json=body).json()["stdout"].split()
    assert int(memory) == 64 * 1024 * 1024
    assert int(pids) == 512


def test_no_new_privileges_is_set(client):
    body = run_body("sh", "-c", "grep NoNewPrivs /proc/self/status")
    assert client.post("/run", json=body).json()["stdout"].split() == ["NoNewPrivs:", "1"]


def test_default_network_is_none(client):
    body = run_body("sh", "-c", "ls /sys/class/net")
    assert client.post("/run", json=body).json()["stdout"].split() == ["lo"]


def test_an_allowed_network_can_be_chosen(app_client, own_network):
    client = app_client(allowed_networks=["none", own_network])
    body = run_body("sh", "-c", "ls /sys/class/net", network=own_network)
    assert "eth0" in client.post("/run", json=body).json()["stdout"].split()


def test_capabilities_are_dropped_to_the_small_set(client):
    body = run_body("sh", "-c", "grep CapEff /proc/self/status")
    effective = int(client.post("/run", json=body).json()["stdout"].split()[1], 16)
    granted = {
        0: "CHOWN",
        1: "DAC_OVERRIDE",
        3: "FOWNER",
        4: "FSETID",
        5: "KILL",
        6: "SETGID",
        7: "SETUID",
    }
    assert effective == sum(1 << bit for bit in granted)


def test_open_files_are_limited(client):
    assert client.post("/run", json=run_body("sh", "-c", "ulimit -n")).json()["stdout"] == "4096\n"


def test_a_root_process_cannot_reach_the_host_through_raw_sockets_or_devices(client):
    body = run_body("sh", "-c", "mknod /tmp/sda b 8 0 && echo made-device")
    result = client.post("/run", json=body).json()
    assert "made-device" not in result["stdout"]
    assert result["exit_code"] != 0
