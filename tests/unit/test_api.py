"""The REST app's own behaviour: status mapping, headers, health, docs."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api_app import create_app
from runner.errors import BackendUnavailable, Busy, RegistryAuthFailed
from runner.tenancy import LOCAL
from tests.fakes import FakeBackend, outcome
from tests.helpers import LocalClient, run_body


def app_with(handler, make_settings) -> TestClient:  # type: ignore[no-untyped-def]
    return LocalClient(create_app(make_settings(), backend=FakeBackend(handler)))


def raising(error):  # type: ignore[no-untyped-def]
    def handler(*args):  # type: ignore[no-untyped-def]
        raise error

    return handler


def test_busy_is_429_with_retry_after(make_settings):
    with app_with(raising(Busy("full", retry_after=3)), make_settings) as api:
        response = api.post("/run", json=run_body("true"))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"] == "busy"


def test_runner_errors_map_to_their_status_and_body(make_settings):
    error = RegistryAuthFailed("auth_config: rejected", field="auth_config")
    with app_with(raising(error), make_settings) as api:
        response = api.post("/run", json=run_body("true"))
    assert response.status_code == 401
    assert response.json() == {
        "error": "registry_auth_failed",
        "message": "auth_config: rejected",
        "field": "auth_config",
    }


def test_unexpected_errors_are_500_without_internals(make_settings):
    with LocalClient(
        create_app(make_settings(), backend=FakeBackend(raising(RuntimeError("secret internals")))),
        raise_server_exceptions=False,
    ) as api:
        response = api.post("/run", json=run_body("true"))
    assert response.status_code == 500
    assert "secret internals" not in response.text


def test_health_is_ok_with_the_backend_version(api):
    assert api.get("/health").json() == {
        "status": "ok",
        "backend": "fake",
        "version": "0",
        "details": {},
    }


def test_health_is_503_with_a_reason_when_the_backend_is_down(make_settings):
    backend = FakeBackend()
    backend.health = raising(BackendUnavailable("engine gone"))  # type: ignore[method-assign]
    with LocalClient(create_app(make_settings(), backend=backend)) as api:
        response = api.get("/health")
    assert response.status_code == 503
    assert response.json()["message"] == "engine gone"


def test_livez_answers_without_asking_the_backend(make_settings):
    """Liveness must not restart a replica (and its runs) because the backend is away."""
    backend = FakeBackend()
    backend.health = raising(BackendUnavailable("engine gone"))  # type: ignore[method-assign]
    with LocalClient(create_app(make_settings(), backend=backend)) as api:
        response = api.get("/livez")
    assert (response.status_code, response.json()) == (200, {"status": "alive"})


def test_openapi_documents_every_request_field_with_a_description(api):
    schema = api.get("/openapi.json").json()["components"]["schemas"]
    run_fields = schema["RunRequest"]["properties"]
    assert set(run_fields) >= {
        "image",
        "command",
        "entrypoint",
        "env_vars",
        "working_dir",
        "user",
        "pull_policy",
        "auth_config",
        "volumes",
        "timeout_seconds",
        "memory",
        "cpus",
        "network",
    }
    for model in ("RunRequest", "VolumeSpec", "AuthConfig", "CreateVolumeRequest"):
        for name, field in schema[model]["properties"].items():
            assert "description" in field and "examples" in field, (model, name)
    assert schema["RunRequest"]["examples"]
    assert api.get("/docs").status_code == 200


def test_volume_endpoint_answers_success(api, fake):
    response = api.post("/volume", json={"name": "data"})
    assert response.status_code == 200
    assert response.json()["status"] == "success"
    assert fake.fills[0].name == "data"


def test_health_answers_while_every_run_slot_is_busy_and_extra_runs_get_429(make_settings):
    import threading

    entered = threading.Semaphore(0)
    release = threading.Event()

    def blocking(spec, control):  # type: ignore[no-untyped-def]
        entered.release()
        release.wait(10)
        return outcome()

    settings = make_settings(max_concurrent_runs=2, max_queued_runs=0)
    with LocalClient(create_app(settings, backend=FakeBackend(blocking))) as api:
        runs = [
            threading.Thread(target=api.post, args=("/run",), kwargs={"json": run_body("x")})
            for _ in range(2)
        ]
        for thread in runs:
            thread.start()
        assert entered.acquire(timeout=10) and entered.acquire(timeout=10)
        assert api.app.state.service.admission.running == 2
        assert api.get("/health").status_code == 200
        refused = api.post("/run", json=run_body("x"))
        release.set()
        for thread in runs:
            thread.join(10)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1


def test_metrics_count_runs_by_outcome_in_prometheus_format(api, fake):
    api.post("/run", json=run_body("true"))
    api.post("/run", json=run_body("true", timeout_seconds=10_000))
    body = api.get("/metrics").text
    assert 'oneoff_runner_runs_total{outcome="success"} 1.0' in body
    assert 'oneoff_runner_runs_total{outcome="policy_refused"} 1.0' in body
    assert "oneoff_runner_runs_in_flight 0.0" in body
    assert "oneoff_runner_phase_seconds_bucket" in body or "oneoff_runner_runs_queued" in body


def test_a_service_that_is_shutting_down_refuses_new_runs_with_503(make_settings):
    import asyncio

    from runner.models import RunRequest
    from runner.service import RunnerService

    async def scenario() -> None:
        service = RunnerService(make_settings(shutdown_grace_seconds=0), FakeBackend())
        await service.stop()
        try:
            await service.run(RunRequest(image="img"), LOCAL)
        except BackendUnavailable as exc:
            assert "shutting down" in exc.message
        else:
            raise AssertionError("a closing service accepted a run")

    asyncio.run(scenario())


def test_api_tokens_never_reach_the_logs(make_settings, caplog):
    settings = make_settings(api_tokens=["token-right-1"])
    with caplog.at_level("DEBUG"), LocalClient(create_app(settings, backend=FakeBackend())) as api:
        denied = api.post("/run", json=run_body("x"), headers={"Authorization": "Bearer guess-2"})
        allowed = api.post(
            "/run", json=run_body("x"), headers={"Authorization": "Bearer token-right-1"}
        )
    assert (denied.status_code, allowed.status_code) == (401, 200)
    assert caplog.records
    assert "token-right-1" not in caplog.text and "guess-2" not in caplog.text
    assert "token-right-1" not in denied.text


def test_runs_log_one_json_line_each_with_their_fields(make_settings, capsys):
    import json
    import logging

    from runner.cli.main import _configure_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    _configure_logging(make_settings(log_format="json"), "info")
    try:
        with LocalClient(create_app(make_settings(), backend=FakeBackend())) as api:
            api.post("/run", json=run_body("true"))
    finally:
        root.handlers[:], root.level = saved
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    runs = [line for line in lines if line.get("outcome") == "success"]
    assert len(runs) == 1
    assert {"run_id", "image", "exit_code", "phases", "execution_time"} <= set(runs[0])
