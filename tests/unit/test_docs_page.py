"""The docs pages render with no network, and without a token when tokens are configured: loaded
in headless Chromium (tests/browser.py), checked in the DOM after the page's scripts ran, not in
the HTML the server sent."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from api_app import create_app
from tests.browser import rendered, tab
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


def test_the_openapi_declares_the_bearer_scheme_where_a_token_is_needed(server: str) -> None:
    schema = httpx.get(f"{server}/openapi.json").json()
    assert schema["openapi"].startswith("3.1")
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "security" not in schema
    assert schema["paths"]["/runs"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in schema["paths"]["/health"]["get"]
    authorized = httpx.get(f"{server}/runs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert authorized.status_code == 200


TRY_IT_OUT = """(async () => {
  const found = async (find) => {
    for (let tries = 0; tries < 600; tries++) {
      const element = find();
      if (element) return element;
      await new Promise((later) => setTimeout(later, 50));
    }
    throw new Error("not on the page: " + find);
  };
  const operation = await found(() => document.querySelector("#operations-runs-run_run_post"));
  operation.querySelector(".opblock-summary-control").click();
  (await found(() => operation.querySelector(".try-out__btn"))).click();
  (await found(() => operation.querySelector(".execute"))).click();
  const answer = await found(() => operation.querySelector(".live-responses-table .response"));
  return [
    answer.querySelector(".response-col_status").textContent.trim(),
    answer.querySelector(".microlight, pre").textContent,
  ];
})()"""
"""Expand POST /run, "Try it out", "Execute" (the example request), as a person would click."""


def test_try_it_out_runs_from_the_docs_page_of_a_runner_without_tokens(make_settings):
    """The page's own calls are same-origin: the browser checks let them through."""
    app = create_app(make_settings(), backend=FakeBackend())
    with serving(app) as port, tab(f"http://127.0.0.1:{port}/docs") as page:
        status, answer = page.evaluate(TRY_IT_OUT)
    assert status == "200"
    assert '"status": "success"' in answer
