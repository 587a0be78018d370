"""A run's end comes from the engine's event stream (its `die`, before the engine's teardown),
and from `wait` whenever the stream cannot tell: a run never hangs on a stream that broke."""

from __future__ import annotations

from tests.docker.watching import Events, in_background
from tests.helpers import run_body


def test_a_run_waiting_when_the_event_stream_breaks_still_ends_with_its_exit_code(
    app_client, docker_client
):
    client = app_client()
    backend = client.app.state.service.backend
    client.post("/run", json=run_body("true")).raise_for_status()  # the stream is connected
    events = Events(docker_client, backend.settings.instance_id)
    try:
        result = in_background(
            lambda: client.post("/run", json=run_body("sh", "-c", "sleep 1; exit 3")).json()
        )
        events.wait("start")
        backend.attached.exits.close()
        answer = result()
    finally:
        events.close()
    assert isinstance(answer, dict) and answer["exit_code"] == 3, answer
    assert answer["status"] == "error: 3"


def test_a_process_killed_for_memory_is_reported_though_the_run_exits_0(client):
    """The kernel kills `dd` (its tmpfs pages count against the limit), the shell goes on: the
    exit code says nothing, the engine's `oom` event does."""
    hog = "dd if=/dev/zero of=/dev/shm/fill bs=1M count=64; echo survived"
    result = client.post("/run", json=run_body("sh", "-c", hog, memory="16m")).json()
    assert (result["exit_code"], result["stdout"], result["oom_killed"]) == (0, "survived\n", True)
