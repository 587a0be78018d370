"""Operators and tenants: what belongs to no tenant (every container and image on the engine,
the per-tenant metrics) is an operator's to see: a holder of RUNNER_OPERATOR_TOKENS, or the
local caller of a runner without tokens. Through both doors, over a FakeBackend."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from api_app import create_app as create_rest_app
from mcp_app import create_app as create_mcp_app
from runner.engine_models import ImageInfo
from runner.settings import Settings
from runner.tenancy import LOCAL, tenant_for
from tests.fakes import FakeBackend
from tests.helpers import LocalClient, run_body, serving

OPERATOR, TENANT = "ops-token", "alice-token"
TOKENS = {"operator_tokens": [f"ops:{OPERATOR}"], "api_tokens": [f"alice:{TENANT}"]}
IMAGES = [
    ImageInfo(id="sha256:" + "1" * 64, tags=["python:3.12", "evil/miner:latest"], size=1),
    ImageInfo(id="sha256:" + "2" * 64, tags=["registry.example.com/team/app:1"], size=2),
    ImageInfo(id="sha256:" + "3" * 64, tags=[], size=3),
]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.contextmanager
def rest(settings: Settings, backend: FakeBackend) -> Iterator[LocalClient]:
    with LocalClient(create_rest_app(settings, backend=backend)) as client:
        yield client


def connect(url: str, token: str) -> Client:
    http = httpx2.AsyncClient(headers=bearer(token), timeout=60)
    return Client(streamable_http_client(url, http_client=http), mode="legacy")


@pytest.fixture
def fake() -> FakeBackend:
    backend = FakeBackend()
    backend.images = list(IMAGES)
    return backend


def test_a_tenant_listing_every_container_is_403_naming_the_parameter(make_settings, fake):
    with rest(make_settings(**TOKENS), fake) as api:
        response = api.get("/containers?managed_only=false", headers=bearer(TENANT))
        assert api.get("/containers", headers=bearer(TENANT)).status_code == 200
    assert response.status_code == 403
    assert response.json()["field"] == "managed_only"
    assert "RUNNER_OPERATOR_TOKENS" in response.json()["message"]
    assert (LOCAL.label, False) not in fake.listings
    assert all(managed for _, managed in fake.listings)


def test_an_operator_token_lists_every_container(make_settings, fake):
    with rest(make_settings(**TOKENS), fake) as api:
        response = api.get("/containers?managed_only=false", headers=bearer(OPERATOR))
    assert response.status_code == 200
    assert [managed for _, managed in fake.listings] == [False]


def test_without_tokens_the_local_caller_is_the_operator(make_settings, fake):
    with rest(make_settings(allowed_images=["python:*"]), fake) as api:
        assert api.get("/containers?managed_only=false").status_code == 200
        assert api.get("/images").json() == [image.model_dump() for image in IMAGES]


def test_a_tenant_lists_only_the_images_it_may_run(make_settings, fake):
    settings = make_settings(allowed_images=["python:*", "registry.example.com/"], **TOKENS)
    with rest(settings, fake) as api:
        listed = api.get("/images", headers=bearer(TENANT)).json()
        everything = api.get("/images", headers=bearer(OPERATOR)).json()
    assert [(image["size"], image["tags"]) for image in listed] == [
        (1, ["python:3.12"]),
        (2, ["registry.example.com/team/app:1"]),
    ]
    assert everything == [image.model_dump() for image in IMAGES]


def test_a_tenant_lists_no_private_image_it_holds_no_grant_for(make_settings, fake):
    """The allowed-images filter and the private-images grants both apply to a tenant's
    listing: an allowed image another tenant pulled with credentials stays unseen."""
    settings = make_settings(
        allowed_images=["python:*", "registry.example.com/"],
        operator_tokens=[f"ops:{OPERATOR}"],
        api_tokens=[f"alice:{TENANT}", "bob:bob-token"],
    )
    private = IMAGES[1].id
    fake.grants = {private: frozenset({tenant_for("bob-token", "bob").label})}
    with rest(settings, fake) as api:
        alice = api.get("/images", headers=bearer(TENANT)).json()
        bob = api.get("/images", headers=bearer("bob-token")).json()
        everything = api.get("/images", headers=bearer(OPERATOR)).json()
    assert [image["id"] for image in alice] == [IMAGES[0].id]
    assert [image["id"] for image in bob] == [IMAGES[0].id, private]
    assert everything == [image.model_dump() for image in IMAGES]


@pytest.mark.anyio
async def test_over_mcp_a_tenant_lists_only_its_images_and_never_every_container(
    make_settings, fake
):
    settings = make_settings(allowed_images=["python:*"], **TOKENS)
    with serving(create_mcp_app(settings, backend=fake)) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        async with connect(url, TENANT) as tenant:
            images = await tenant.call_tool("list_images", {})
            containers = await tenant.call_tool("list_containers", {"managed_only": False})
        async with connect(url, OPERATOR) as operator:
            every = await operator.call_tool("list_containers", {"managed_only": False})
    assert [image["tags"] for image in images.structured_content["images"]] == [["python:3.12"]]
    assert containers.is_error and "managed_only" in containers.content[0].text
    assert not every.is_error


def test_metrics_name_no_tenant_by_default(make_settings, fake):
    with rest(make_settings(**TOKENS), fake) as api:
        assert api.post("/run", json=run_body("true"), headers=bearer(TENANT)).status_code == 200
        metrics = api.get("/metrics", headers=bearer(TENANT))
    assert metrics.status_code == 200
    assert 'oneoff_runner_runs_total{outcome="success"} 1.0' in metrics.text
    assert "alice" not in metrics.text and "tenant=" not in metrics.text


def test_metrics_with_tenant_names_are_for_operators_only(make_settings, fake):
    with rest(make_settings(metrics_tenants=True, **TOKENS), fake) as api:
        api.post("/run", json=run_body("true"), headers=bearer(TENANT))
        refused = api.get("/metrics", headers=bearer(TENANT))
        metrics = api.get("/metrics", headers=bearer(OPERATOR))
    assert refused.status_code == 403
    assert "RUNNER_OPERATOR_TOKENS" in refused.json()["message"]
    assert 'oneoff_runner_runs_total{outcome="success",tenant="alice"} 1.0' in metrics.text


def test_without_tokens_tenant_names_in_metrics_are_the_local_user_s(make_settings, fake):
    with rest(make_settings(metrics_tenants=True), fake) as api:
        api.post("/run", json=run_body("true"))
        metrics = api.get("/metrics")
    assert 'oneoff_runner_runs_total{outcome="success",tenant="local"} 1.0' in metrics.text


def test_an_operator_token_is_also_a_tenant_of_its_own(make_settings):
    tokens = dict(make_settings(**TOKENS).tokens())
    assert tokens[OPERATOR].operator and tokens[OPERATOR].name == "ops"
    assert not tokens[TENANT].operator
    assert tokens[OPERATOR].label != tokens[TENANT].label
