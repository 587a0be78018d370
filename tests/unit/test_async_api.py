"""The async-run endpoints' own behaviour over a FakeBackend: refusals, queue limits, keys."""

from __future__ import annotations

import threading

from api_app import create_app
from tests.fakes import FakeBackend, outcome
from tests.helpers import LocalClient, run_body


def test_an_unknown_run_is_404_naming_run_id_and_the_ttl(make_settings):
    with LocalClient(create_app(make_settings(), backend=FakeBackend())) as api:
        response = api.get("/runs/0123456789abcdef")
        logs = api.get("/runs/0123456789abcdef/logs")
    assert response.status_code == 404
    assert response.json()["field"] == "run_id"
    assert "result_ttl_seconds" in response.json()["message"]
    assert logs.status_code == 404


def test_a_malformed_run_id_is_422(make_settings):
    with LocalClient(create_app(make_settings(), backend=FakeBackend())) as api:
        response = api.delete("/runs/not-a-run")
    assert response.status_code == 422
    assert response.json()["field"] == "path.run_id"


def test_a_bad_body_is_refused_before_anything_starts(make_settings):
    backend = FakeBackend()
    with LocalClient(create_app(make_settings(), backend=backend)) as api:
        response = api.post("/runs", json=run_body("true", memory="lots"))
    assert response.status_code == 422
    assert response.json()["field"] == "memory"
    assert backend.specs == []


def test_past_the_queue_limit_a_start_is_429(make_settings):
    release = threading.Event()

    def slow(spec, control):  # type: ignore[no-untyped-def]
        release.wait(30)
        return outcome()

    settings = make_settings(max_concurrent_runs=1, max_queued_runs=0)
    with LocalClient(create_app(settings, backend=FakeBackend(slow))) as api:
        first = api.post("/runs", json=run_body("true"))
        second = api.post("/runs", json=run_body("true"))
        release.set()
    assert first.status_code == 202
    assert second.status_code == 429
    assert second.headers["retry-after"]


def test_an_empty_idempotency_key_is_422_naming_the_header(make_settings):
    """An empty key is no key: taken as one, unrelated starts would get back an earlier run."""
    backend = FakeBackend()
    with LocalClient(create_app(make_settings(), backend=backend)) as api:
        response = api.post("/runs", json=run_body("true"), headers={"Idempotency-Key": ""})
    assert response.status_code == 422
    assert response.json()["field"] == "Idempotency-Key"
    assert backend.specs == []


def test_the_same_idempotency_key_starts_one_run(make_settings):
    backend = FakeBackend()
    key = {"Idempotency-Key": "deploy-42"}
    with LocalClient(create_app(make_settings(), backend=backend)) as api:
        first = api.post("/runs", json=run_body("true"), headers=key).json()
        again = api.post("/runs", json=run_body("true"), headers=key).json()
    assert first["run_id"] == again["run_id"]
    assert len(backend.specs) == 1


def test_deleting_a_finished_run_answers_its_result_and_removes_it(make_settings):
    backend = FakeBackend(lambda spec, control: outcome(stdout=b"done\n"))
    with LocalClient(create_app(make_settings(), backend=backend)) as api:
        run_id = api.post("/runs", json=run_body("true")).json()["run_id"]
        with api.stream("GET", f"/runs/{run_id}/logs") as stream:
            assert any(line.startswith("event: exit") for line in stream.iter_lines())
        response = api.delete(f"/runs/{run_id}")
        after = api.get(f"/runs/{run_id}")
    assert response.json()["state"] == "succeeded"
    assert response.json()["result"]["stdout"] == "done\n"
    assert after.status_code == 404


def test_many_runs_being_watched_do_not_starve_the_worker_threads(make_settings):
    """Each async run is watched for as long as it lasts; those waits must not hold the shared
    worker threads (40 by default), or every other request would queue behind them."""
    release = threading.Event()

    class Waiting(FakeBackend):
        def wait_run(self, run_id: str) -> None:
            release.wait(60)

    settings = make_settings(max_concurrent_runs=64, max_queued_runs=64)
    with LocalClient(create_app(settings, backend=Waiting())) as api:
        for _ in range(45):
            assert api.post("/runs", json=run_body("true")).status_code == 202
        listed = api.get("/runs")
        release.set()
    assert listed.status_code == 200
    assert len(listed.json()["runs"]) == 45


def test_async_outcomes_are_counted_in_the_metrics(make_settings):
    backend = FakeBackend(lambda spec, control: outcome(exit_code=1))
    with LocalClient(create_app(make_settings(), backend=backend)) as api:
        run_id = api.post("/runs", json=run_body("true")).json()["run_id"]
        api.portal.call(api.app.state.service.runs.until_settled)
        metrics = api.get("/metrics").text
        assert api.get(f"/runs/{run_id}").json()["state"] == "failed"
    assert 'oneoff_runner_runs_total{outcome="error"} 1.0' in metrics


def test_an_idempotency_key_belongs_to_the_caller_s_token(make_settings):
    settings = make_settings(api_tokens=["alice-token", "bob-token"])
    key = {"Idempotency-Key": "nightly"}
    with LocalClient(create_app(settings, backend=FakeBackend())) as api:
        alice = {**key, "Authorization": "Bearer alice-token"}
        bob = {**key, "Authorization": "Bearer bob-token"}
        first = api.post("/runs", json=run_body("true"), headers=alice).json()["run_id"]
        again = api.post("/runs", json=run_body("true"), headers=alice).json()["run_id"]
        other = api.post("/runs", json=run_body("true"), headers=bob).json()["run_id"]
    assert first == again
    assert other != first


def test_a_run_launched_while_the_kept_bound_is_checked_still_counts(make_settings):
    """The engine is asked while a run launches and answers from before the launch ended; by
    then the run is no longer pending. It must count from one or the other (a warm start ends
    its launch in milliseconds, well inside the engine's answer)."""
    launching, gate, watched = threading.Event(), threading.Event(), threading.Event()

    def launch(spec, control):  # type: ignore[no-untyped-def]
        launching.set()
        gate.wait(30)
        return outcome()

    class Racing(FakeBackend):
        def wait_run(self, run_id: str) -> None:
            watched.set()  # the service forgot the pending run and watches it now

        def find_runs(self, **query):  # type: ignore[no-untyped-def]
            found = super().find_runs(**query)
            if launching.is_set() and not gate.is_set():
                gate.set()
                assert watched.wait(30)
            return found

    settings = make_settings(max_kept_runs=1)
    with LocalClient(create_app(settings, backend=Racing(launch))) as api:
        first = api.post("/runs", json=run_body("true"))
        assert launching.wait(30)
        second = api.post("/runs", json=run_body("true"))
    assert first.status_code == 202
    assert second.status_code == 429, second.text
