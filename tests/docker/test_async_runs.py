"""Async runs on the real engine: started by one request, followed, cancelled, collected by later
ones, also after the runner restarts."""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
from httpx_sse import connect_sse

from backends.docker.backend import DockerBackend
from backends.docker.runs import NEVER_STARTED
from backends.labels import (
    ASYNC_ROLE,
    CREATED,
    DEADLINE,
    INSTANCE,
    MANAGED,
    OUTPUT,
    OWNER,
    ROLE,
    RUN_ID,
    TENANT,
    TIMEOUT_AT,
    TTL,
)
from runner.spec import RunRecord
from tests.docker.watching import Events
from tests.faults import EngineProxy, engine_fault
from tests.helpers import TEST_IMAGE, Server, managed_objects, run_body, run_containers, until

COUNTDOWN = "for i in $(seq 1 12); do echo line $i; sleep 0.25; done; echo done >&2"


def events(client: httpx.Client, run_id: str) -> Iterator[tuple[str, str]]:
    with connect_sse(client, "GET", f"/runs/{run_id}/logs", timeout=60) as source:
        assert source.response.status_code == 200
        for event in source.iter_sse():
            yield event.event, event.data


def follow_to_exit(client: httpx.Client, run_id: str) -> tuple[list[tuple[str, str]], dict]:  # type: ignore[type-arg]
    seen = list(events(client, run_id))
    kind, data = seen[-1]
    assert kind == "exit"
    return seen[:-1], json.loads(data)


def output_of(seen: list[tuple[str, str]], stream: str) -> str:
    return "".join(json.loads(data) for kind, data in seen if kind == stream)


def start(client: httpx.Client, *command: str, **fields: object) -> str:
    response = client.post("/runs", json=run_body(*command, **fields))
    assert response.status_code == 202, response.text
    return str(response.json()["run_id"])


def test_start_answers_202_with_urls_and_the_status_holds_the_result(server: Server) -> None:
    with server() as client:
        response = client.post("/runs", json=run_body("sh", "-c", "echo out; echo err >&2"))
        assert response.status_code == 202
        accepted = response.json()
        run_id = accepted["run_id"]
        assert accepted["status_url"].endswith(f"/runs/{run_id}")
        assert accepted["logs_url"].endswith(f"/runs/{run_id}/logs")
        assert response.headers["location"] == accepted["status_url"]
        follow_to_exit(client, run_id)
        status = client.get(accepted["status_url"]).json()
    assert status["state"] == "succeeded"
    assert status["started_at"] and status["finished_at"]
    assert (status["result"]["stdout"], status["result"]["stderr"]) == ("out\n", "err\n")
    assert status["result"]["exit_code"] == 0


def test_a_late_subscriber_receives_every_line_in_order(server: Server) -> None:
    with server() as client:
        run_id = start(client, "sh", "-c", COUNTDOWN)
        wait_for_output(client, run_id, "line 3")
        late, status = follow_to_exit(client, run_id)
    expected = "".join(f"line {i}\n" for i in range(1, 13))
    assert output_of(late, "stdout") == expected
    assert output_of(late, "stderr") == "done\n"
    assert status["state"] == "succeeded"
    assert status["result"]["stdout"] == expected


def test_a_last_line_without_a_newline_is_streamed_before_the_exit(server: Server) -> None:
    """Docker 20.10 ends a followed log at the container's exit, most often before a last line
    without a newline is read (79 in 100 here): the stream still gives it."""
    with server() as client:
        for _ in range(3):
            run_id = start(client, "sh", "-c", "echo ready; sleep 1; printf one; printf two >&2")
            seen, status = follow_to_exit(client, run_id)
            assert (output_of(seen, "stdout"), output_of(seen, "stderr")) == ("ready\none", "two")
            assert status["result"]["stdout"] == "ready\none"


def test_cancel_kills_the_run_and_removes_its_container(
    server: Server, docker_client: docker.DockerClient
) -> None:
    with server() as client:
        run_id = running(client)
        cancelled = client.post(f"/runs/{run_id}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json()["state"] == "cancelled"
        assert run_containers(docker_client, run_id) == []
        assert client.get(f"/runs/{run_id}").json()["state"] == "cancelled"
        client.delete(f"/runs/{run_id}")


def test_deleting_a_running_run_kills_and_removes_it(
    server: Server, docker_client: docker.DockerClient
) -> None:
    with server() as client:
        run_id = running(client)
        removed = client.delete(f"/runs/{run_id}")
        after = [client.get(f"/runs/{run_id}"), client.get(f"/runs/{run_id}/logs")]
        left = run_containers(docker_client, run_id)
        records = docker_client.api.volumes(filters={"label": f"{RUN_ID}={run_id}"})["Volumes"]
    assert removed.status_code == 200
    assert removed.json()["state"] == "cancelled"
    assert [answer.status_code for answer in after] == [404, 404]
    assert left == []
    assert not records


@engine_fault
def test_a_run_being_cancelled_is_cancelled_meanwhile(
    server: Server, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """While its container is being removed, the run already says "cancelled" (not a 404, nor
    "failed" with the kill's exit code) to any caller: the record is kept before the removal."""
    proxy = EngineProxy(tmp_path / "engine.sock")
    proxy.start()
    with server(docker_host=proxy.docker_host) as client:
        run_id = running(client)
        (container,) = run_containers(docker_client, run_id, all_states=False)
        answers: list[httpx.Response] = []

        def cancel() -> None:
            answers.append(client.post(f"/runs/{run_id}/cancel"))

        with proxy.removal_held(container["Id"], cancel):
            meanwhile = client.get(f"/runs/{run_id}")
        assert meanwhile.status_code == 200, meanwhile.text
        assert meanwhile.json()["state"] == "cancelled"
        assert [answer.json()["state"] for answer in answers] == ["cancelled"]


def running(client: httpx.Client) -> str:
    """A run started and running (it has printed), for a long while."""
    run_id = start(client, "sh", "-c", "echo ready; sleep 300")
    wait_for_output(client, run_id, "ready")
    return run_id


def wait_for_output(client: httpx.Client, run_id: str, text: str) -> None:
    for kind, data in events(client, run_id):
        if kind == "stdout" and text in json.loads(data):
            return
    raise AssertionError(f"the run ended without printing {text!r}")


def test_a_restarted_runner_answers_for_a_run_started_before(server: Server) -> None:
    with server() as client:
        run_id = start(client, "sh", "-c", COUNTDOWN)
        wait_for_output(client, run_id, "line 1")
    with server() as client:
        seen, status = follow_to_exit(client, run_id)
    assert status["state"] == "succeeded"
    assert status["result"]["stdout"].endswith("line 12\n")
    assert output_of(seen, "stdout") == status["result"]["stdout"]


def test_a_restarted_runner_still_enforces_the_timeout(server: Server) -> None:
    with server() as client:
        run_id = start(client, "sh", "-c", "echo started; sleep 300", timeout_seconds=2)
        wait_for_output(client, run_id, "started")
    with server() as client:
        _, status = follow_to_exit(client, run_id)
    assert status["state"] == "timeout"
    assert status["result"]["timed_out"] is True


def test_a_repeated_idempotency_key_returns_the_same_run(server: Server) -> None:
    key = {"Idempotency-Key": f"build-{uuid.uuid4()}"}
    body = run_body("echo", "once")
    with server() as client:
        first = client.post("/runs", json=body, headers=key).json()["run_id"]
        again = client.post("/runs", json=body, headers=key).json()["run_id"]
        follow_to_exit(client, first)
    with server() as client:
        after_restart = client.post("/runs", json=body, headers=key).json()["run_id"]
        other = client.post("/runs", json=body).json()["run_id"]
        follow_to_exit(client, other)
    assert first == again == after_restart
    assert other != first


def test_a_finished_run_is_removed_after_its_ttl(
    server: Server, docker_client: docker.DockerClient, instance: str, make_settings
) -> None:
    settings = make_settings(instance_id=instance, result_ttl_seconds=0)
    events = Events(docker_client, instance)
    with server(result_ttl_seconds=0) as client:
        run_id = start(client, "echo", "hi")
        events.wait("die", ASYNC_ROLE)  # not its output: any reaper may remove it from then on
        until(lambda: listed_state(docker_client, run_id) != "running", 10)  # lags the `die`
        reaper = DockerBackend(settings)  # what any runner's periodic reaper does
        try:
            # Any runner's reaper on the shared engine may get there first; the outcome counts.
            reaper.reap_orphans()
            events.until_removed([f"oneoff-{run_id}"])
        finally:
            reaper.close()
            events.close()
        response = client.get(f"/runs/{run_id}")
    assert response.status_code == 404
    assert "result_ttl_seconds" in response.json()["message"]
    assert managed_objects(docker_client, instance) == []


def listed_state(docker_client: docker.DockerClient, run_id: str) -> str | None:
    """The run's container's state as the engine lists it (what a reaper reads); None when
    it is gone."""
    found = run_containers(docker_client, run_id)
    return found[0]["State"] if found else None


def test_a_run_that_times_out_ends_in_state_timeout(server: Server) -> None:
    with server() as client:
        run_id = start(client, "sh", "-c", "echo started; sleep 300", timeout_seconds=1)
        _, status = follow_to_exit(client, run_id)
    assert status["state"] == "timeout"
    assert status["result"]["stdout"] == "started\n"


def test_a_run_whose_image_is_missing_fails_with_the_reason(server: Server) -> None:
    with server() as client:
        run_id = start(client, "true", image="oneoff-test/not-there:1", pull_policy="never")
        _, status = follow_to_exit(client, run_id)
    assert status["state"] == "failed"
    assert "not-there" in status["error"]
    assert status["result"] is None


def test_files_come_back_from_an_async_run(server: Server) -> None:
    body = run_body("sh", "-c", "echo made > /out/result.txt")
    body["volumes"] = {"/out": {"type": "directory", "response": True}}
    with server() as client:
        run_id = client.post("/runs", json=body).json()["run_id"]
        _, status = follow_to_exit(client, run_id)
    assert status["state"] == "succeeded"
    assert status["result"] is not None, status
    assert status["result"]["volumes"]["/out"]["type"] == "directory"


def test_runs_are_listed_with_filters(server: Server) -> None:
    token = f"list-{uuid.uuid4().hex}"  # a tenant of its own: other suites' runs share the engine
    with server(api_tokens=[token]) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        done = start(client, "true")
        failed = start(client, "false")
        follow_to_exit(client, done)
        follow_to_exit(client, failed)
        succeeded = listed(client, state="succeeded")
        everything = listed(client, image=TEST_IMAGE)
    assert [run["run_id"] for run in succeeded] == [done]
    assert {run["run_id"] for run in everything} == {done, failed}


def listed(client: httpx.Client, **filters: str) -> list[dict]:  # type: ignore[type-arg]
    response = client.get("/runs", params={**filters, "limit": 1000})
    assert response.status_code == 200, response.text
    runs: list[dict] = response.json()["runs"]  # type: ignore[type-arg]
    return runs


def test_a_subscriber_that_goes_away_leaves_no_reader_behind(server: Server) -> None:
    """The engine log stream a subscriber was following is closed when it disconnects, though
    its run goes on."""

    with server() as client:
        run_id = start(client, "sh", "-c", "echo ready; sleep 300")
        wait_for_output(client, run_id, "ready")  # opens, reads, then drops the connection
        followers = [t for t in threading.enumerate() if t.name == "oneoff-follow"]
        for follower in followers:
            follower.join(30)
        assert not any(follower.is_alive() for follower in followers)
        assert client.get(f"/runs/{run_id}").json()["state"] == "running"
        client.delete(f"/runs/{run_id}")


def never_started(
    docker_client: docker.DockerClient, instance: str, owner: str = "0" * 32
) -> tuple[str, dict]:  # type: ignore[type-arg]
    """(run id, container as listed) of an async run's container created, never started, by a
    runner that holds no lease any more (it crashed mid-launch; by default)."""
    run_id, now = uuid.uuid4().hex[:16], time.time()
    labels = {
        MANAGED: "true",
        RUN_ID: run_id,
        INSTANCE: instance,
        ROLE: ASYNC_ROLE,
        DEADLINE: str(int(now + 3600)),
        CREATED: repr(now),
        TIMEOUT_AT: repr(now + 60),
        TTL: "3600",
        OUTPUT: json.dumps({"max_output": 1024, "max_response": 1024, "response": []}),
        OWNER: owner,
        TENANT: "tenant-under-test",
    }
    created = docker_client.api.create_container(
        TEST_IMAGE, ["true"], labels=labels, name=f"oneoff-{run_id}"
    )
    return run_id, {"Id": created["Id"], "Labels": labels, "Image": TEST_IMAGE}


def test_a_run_recorded_twice_keeps_its_first_end(
    docker_client: docker.DockerClient, instance: str, make_settings
) -> None:
    """Two runners may end the same run (a cancel and its launch, two reapers): the first end
    kept counts, and the second is no error."""
    backend = DockerBackend(make_settings(instance_id=instance))
    try:
        first = RunRecord(run_id=uuid.uuid4().hex[:16], state="cancelled", image="x", created_at=1)
        backend.record_run(first)
        backend.record_run(dataclasses.replace(first, state="failed", error="a later end"))
        (kept,) = backend.find_runs(tenant=None, run_id=first.run_id, idempotency_key=None)
    finally:
        backend.close()
    assert (kept.state, kept.error) == ("cancelled", None)


def test_a_run_whose_runner_died_before_starting_it_is_removed_and_recorded(
    docker_client: docker.DockerClient, instance: str, make_settings
) -> None:
    """Any runner's reaper removes such a run, and the run says it never ran; its record is the
    dead runner's (removed with what that runner's instance left), not the reaper's."""
    events = Events(docker_client, instance)
    run_id, _ = never_started(docker_client, instance)
    reaper = DockerBackend(make_settings())  # another runner
    try:
        reaper.reap_orphans()  # or another runner's reaper, first: the outcome is the same
        (record,) = reaper.find_runs(tenant=None, run_id=run_id, idempotency_key=None)
        events.until_removed([f"oneoff-{run_id}"])  # by this reaper, or by one that came first
    finally:
        reaper.close()
        events.close()
    assert (record.state, record.error) == ("failed", NEVER_STARTED)
    assert managed_objects(docker_client, instance) == [f"oneoff-{run_id}-record"]
    assert record.tenant == "tenant-under-test"


@engine_fault
def test_a_run_being_reaped_never_looks_gone(
    docker_client: docker.DockerClient, instance: str, make_settings, tmp_path: Path
) -> None:
    """While one runner's reaper removes a never-started run, another runner (or the same one's
    next reaping) already finds its record: the record is written before the removal."""
    events = Events(docker_client, instance)
    other = DockerBackend(make_settings(instance_id=instance))
    other.renew_lease()
    # Owned by a live lease, so that no other runner's reaper takes it; abandoned directly, as
    # reap_orphans would once that lease is gone
    run_id, container = never_started(docker_client, instance, other.containers.lease.owner)
    proxy = EngineProxy(tmp_path / "engine.sock")
    proxy.start()
    reaper = DockerBackend(make_settings(instance_id=instance, docker_host=proxy.docker_host))
    abandon = functools.partial(reaper.detached.abandon, run_id, container)
    try:
        with proxy.removal_held(container["Id"], abandon):
            (record,) = other.find_runs(tenant=None, run_id=run_id, idempotency_key=None)
        assert (record.state, record.error) == ("failed", NEVER_STARTED)
    finally:
        reaper.close()
        other.close()
    events.until_removed([f"oneoff-{run_id}"])
    events.close()
