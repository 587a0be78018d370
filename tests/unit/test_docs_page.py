"""The docs pages render with no network, and without a token when tokens are configured: loaded
in headless Chromium (tests/browser.py), checked in the DOM after the page's scripts ran, not in
the HTML the server sent."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from api_app import create_app
from tests.browser import rendered
from tests.fakes import FakeBackend
from tests.helpers import serving

pytestmark = pytest.mark.chromium
TOKEN = "docs-test-token"


@pytest.fixture(scope="module")
def server(make_module_settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    app = create_app(make_module_settings(api_tokens=[TOKEN]), backend=FakeBackend())
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}"


def test_swagger_ui_lists_the_operations_offline_with_an_authorize_button(server: str) -> None:
    dom = rendered(f"{server}/docs")
    assert "/runs/{run_id}/logs" in dom  # an operation's path, put there by Swagger UI's script
    assert dom.count('class="opblock-summary-path"') >= 10
    assert "btn authorize" in dom
    assert "Unable to render this definition" not in dom


def test_redoc_lists_the_operations_offline(server: str) -> None:
    dom = rendered(f"{server}/redoc")
    assert dom.count('data-section-id="operation/') >= 10


def test_the_pages_their_assets_and_the_openapi_need_no_token(server: str) -> None:
    page = httpx.get(f"{server}/docs").text
    assert "cdn" not in page.lower()
    assets = [part.split('"')[0] for part in page.split('"/docs-assets/')[1:]]
    assert assets, page
    for path in ["/docs", "/redoc", "/openapi.json", *(f"/docs-assets/{name}" for name in assets)]:
        assert httpx.get(f"{server}{path}").status_code == 200, path
    assert httpx.get(f"{server}/runs").status_code == 401


def test_the_openapi_declares_the_bearer_scheme_and_health_as_open(server: str) -> None:
    schema = httpx.get(f"{server}/openapi.json").json()
    assert schema["openapi"].startswith("3.1")
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["security"] == [{"bearer": []}]
    assert schema["paths"]["/health"]["get"]["security"] == []
    authorized = httpx.get(f"{server}/runs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert authorized.status_code == 200
