"""What a web page in the operator's browser could send, refused alike by both HTTP doors
(`runner.browsers`, put in front of both by `runner.guards`): served on loopback ports over
FakeBackends, called with the headers a browser sends. (Chromium itself attacks the real runner
in tests/docker/test_browser_attacks.py.)"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from api_app import create_app as create_rest_app
from mcp_app import create_app as create_mcp_app
from tests.fakes import FakeBackend
from tests.helpers import run_body, serving

ATTACKER = "attacker.example"
TOOLS_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@dataclass(frozen=True)
class Doors:
    rest: int
    mcp: int

    def call(self, door: str, **headers: str) -> httpx.Response:
        """A request each door answers when nothing is wrong with it: GET /runs on REST,
        tools/list on MCP."""
        if door == "rest":
            return httpx.get(f"http://127.0.0.1:{self.rest}/runs", headers=headers)
        return httpx.post(
            f"http://127.0.0.1:{self.mcp}/mcp",
            json=TOOLS_LIST,
            headers={**MCP_HEADERS, **headers},
        )

    def port(self, door: str) -> int:
        return self.rest if door == "rest" else self.mcp


@contextlib.contextmanager
def serve_doors(settings) -> Iterator[Doors]:  # type: ignore[no-untyped-def]
    backend = FakeBackend()
    rest, mcp = (
        create_rest_app(settings, backend=backend),
        create_mcp_app(settings, backend=backend),
    )
    with serving(rest) as rest_port, serving(mcp) as mcp_port:
        yield Doors(rest_port, mcp_port)


@pytest.fixture(scope="module")
def doors(make_module_settings) -> Iterator[Doors]:  # type: ignore[no-untyped-def]
    """Both doors without tokens, as `oneoff-runner serve` runs on a laptop."""
    with serve_doors(make_module_settings()) as served:
        yield served


@pytest.fixture
def make_doors(make_settings):  # type: ignore[no-untyped-def]
    with contextlib.ExitStack() as stack:
        yield lambda **settings: stack.enter_context(serve_doors(make_settings(**settings)))


DOORS = pytest.mark.parametrize("door", ["rest", "mcp"])


def refused(response: httpx.Response, status: int, header: str, setting: str) -> None:
    """The refusal both doors give: JSON naming the header to fix and the setting to change."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["field"] == header
    assert setting in body["message"]
    assert response.headers["x-frame-options"] == "DENY"


# ---- Host: DNS rebinding ------------------------------------------------------------------------


@DOORS
def test_a_host_the_runner_does_not_serve_is_421(doors, door):
    response = doors.call(door, Host=f"{ATTACKER}:{doors.port(door)}")
    refused(response, 421, "Host", "RUNNER_ALLOWED_HOSTS")
    assert response.json()["error"] == "misdirected_host"


@pytest.mark.parametrize(
    "path", ["/containers?managed_only=false", "/runs", "/metrics", "/openapi.json", "/docs"]
)
def test_under_a_rebound_name_nothing_on_rest_answers(doors, path):
    response = httpx.get(f"http://127.0.0.1:{doors.rest}{path}", headers={"Host": ATTACKER})
    refused(response, 421, "Host", "RUNNER_ALLOWED_HOSTS")


@DOORS
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST:1234"])
def test_loopback_names_pass_on_any_port(doors, door, host):
    assert doors.call(door, Host=host).status_code == 200


@DOORS
def test_a_listed_host_passes(make_doors, door):
    served = make_doors(allowed_hosts=["runner.example.com", "api.example.com:8443", "x.test:*"])
    for host in ["runner.example.com", "runner.example.com:9", "api.example.com:8443", "x.test:1"]:
        assert served.call(door, Host=host).status_code == 200, host
    refused(served.call(door, Host="api.example.com:8080"), 421, "Host", "RUNNER_ALLOWED_HOSTS")


@DOORS
def test_with_tokens_and_no_listed_hosts_a_token_passes_under_any_name(make_doors, door):
    """A page cannot send the token, so a remote deployment needs no list of its names."""
    served = make_doors(api_tokens=["tok"])
    assert served.call(door, Host="10.1.2.3:8000", Authorization="Bearer tok").status_code == 200


@DOORS
def test_with_only_an_identity_provider_any_name_reaches_the_token_check(make_doors, door):
    """A provider's sign-in is a token too: no API token configured, the Host check is off as
    with API tokens, and a caller without a token under any name meets the 401 and its
    challenge, not the local operator of a token-less runner."""
    served = make_doors(
        oauth_issuers=["http://127.0.0.1:9/"], oauth_audience=["http://runner.example.com"]
    )
    response = served.call(door, Host="10.1.2.3:8000")
    assert response.status_code == 401, response.text
    assert "resource_metadata=" in response.headers["www-authenticate"]


def test_with_tokens_and_listed_hosts_probes_pass_by_address(make_doors):
    served = make_doors(api_tokens=["tok"], allowed_hosts=["runner.example.com"])
    pod = {"Host": "10.1.2.3:8000"}
    for probe in ("/health", "/livez"):
        assert httpx.get(f"http://127.0.0.1:{served.rest}{probe}", headers=pod).status_code == 200
    authorized = {**pod, "Authorization": "Bearer tok"}
    response = httpx.get(f"http://127.0.0.1:{served.rest}/runs", headers=authorized)
    refused(response, 421, "Host", "RUNNER_ALLOWED_HOSTS")


# ---- Origin and Sec-Fetch-Site: cross-site requests ---------------------------------------------


@DOORS
@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://127.0.0.1:3000",  # a dev server on another port is another origin
        "http://localhost",
        "null",
        "http://127.0.0.1:{port}.evil.example",
    ],
)
def test_a_foreign_origin_is_403(doors, door, origin):
    response = doors.call(door, Origin=origin.format(port=doors.port(door)))
    refused(response, 403, "Origin", "RUNNER_ALLOWED_ORIGINS")
    assert response.json()["error"] == "origin_refused"


@DOORS
def test_the_runner_s_own_origin_passes(doors, door):
    own = f"http://127.0.0.1:{doors.port(door)}"
    assert doors.call(door, Origin=own, **{"Sec-Fetch-Site": "same-origin"}).status_code == 200


@DOORS
@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_a_fetch_from_another_site_without_origin_is_403(doors, door, site):
    response = doors.call(door, **{"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "no-cors"})
    refused(response, 403, "Sec-Fetch-Site", "RUNNER_ALLOWED_ORIGINS")


OLD_BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:60.0) Gecko/20100101 Firefox/60.0"}
"""A browser too old to send `Sec-Fetch-Site`, or `Origin` with a form."""


def post(doors: Doors, door: str, **headers: str) -> httpx.Response:
    """A request that changes something: a run on REST, a tool call on MCP."""
    if door == "rest":
        return httpx.post(
            f"http://127.0.0.1:{doors.rest}/run", json=run_body("true"), headers=headers
        )
    return doors.call(door, **headers)


@DOORS
def test_a_browser_sending_neither_origin_nor_fetch_metadata_may_change_nothing(doors, door):
    response = post(doors, door, **OLD_BROWSER)
    refused(response, 403, "User-Agent", "RUNNER_API_TOKENS")
    assert response.json()["error"] == "origin_refused"


@DOORS
@pytest.mark.parametrize(
    "agent", ["curl/8.5.0", "python-httpx/0.28.1", "node", "oneoff-runner/0.1", "axios/1.7.2"]
)
def test_clients_that_are_not_browsers_pass_without_origin(doors, door, agent):
    assert post(doors, door, **{"User-Agent": agent}).status_code == 200


@DOORS
def test_a_browser_that_says_where_a_request_comes_from_passes(doors, door):
    own = f"http://127.0.0.1:{doors.port(door)}"
    assert post(doors, door, **OLD_BROWSER, Origin=own).status_code == 200
    assert post(doors, door, **OLD_BROWSER, **{"Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert post(doors, door, **OLD_BROWSER, **{"Sec-Fetch-Site": "none"}).status_code == 200


def test_an_old_browser_still_reads_what_anyone_may_read(doors):
    """Only requests that change something are refused: GETs answer (a page cannot read them:
    another origin's answer is the browser's to withhold, and rebinding meets the Host check)."""
    response = httpx.get(f"http://127.0.0.1:{doors.rest}/docs", headers=OLD_BROWSER)
    assert response.status_code == 200


@DOORS
def test_with_tokens_an_old_browser_meets_the_token_check(make_doors, door):
    """A page cannot send the token, so the rule is for runners without tokens only."""
    served = make_doors(api_tokens=["tok"])
    assert post(served, door, **OLD_BROWSER, Authorization="Bearer tok").status_code == 200


def test_a_link_from_another_site_opens_the_docs(doors):
    navigation = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    page = httpx.get(f"http://127.0.0.1:{doors.rest}/docs", headers=navigation)
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"  # never under another page's click
    framed = {**navigation, "Sec-Fetch-Dest": "iframe"}
    response = httpx.get(f"http://127.0.0.1:{doors.rest}/docs", headers=framed)
    refused(response, 403, "Sec-Fetch-Site", "RUNNER_ALLOWED_ORIGINS")


@DOORS
def test_a_listed_origin_passes_with_cors_answers(make_doors, door):
    served = make_doors(allowed_origins=["https://tools.example.com", "http://localhost:*"])
    for origin in ("https://tools.example.com", "http://localhost:5173"):
        headers = {"Origin": origin, "Sec-Fetch-Site": "cross-site"}
        response = served.call(door, **headers)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == origin
    preflight = httpx.options(
        f"http://127.0.0.1:{served.port(door)}/{'runs' if door == 'rest' else 'mcp'}",
        headers={
            "Origin": "https://tools.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    refused(served.call(door, Origin="https://other.example"), 403, "Origin", "ALLOWED_ORIGINS")


@DOORS
def test_an_unlisted_origin_gets_no_preflight(doors, door):
    preflight = httpx.options(
        f"http://127.0.0.1:{doors.port(door)}/{'runs' if door == 'rest' else 'mcp'}",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    refused(preflight, 403, "Origin", "RUNNER_ALLOWED_ORIGINS")
    assert "access-control-allow-origin" not in preflight.headers


def test_off_loopback_with_tokens_the_mcp_door_still_refuses_a_foreign_origin(make_doors):
    served = make_doors(host="0.0.0.0", api_tokens=["tok"])
    response = served.call("mcp", Origin="https://evil.example", Authorization="Bearer tok")
    refused(response, 403, "Origin", "RUNNER_ALLOWED_ORIGINS")
    assert served.call("mcp", Authorization="Bearer tok").status_code == 200


# ---- bodies -------------------------------------------------------------------------------------


@DOORS
@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "application/json, text/plain",
        "application/jsonx",
    ],
)
def test_a_json_body_must_say_application_json(doors, door, content_type):
    url = f"http://127.0.0.1:{doors.port(door)}/{'run' if door == 'rest' else 'mcp'}"
    body = run_body("true") if door == "rest" else TOOLS_LIST
    headers = {**MCP_HEADERS, **({"Content-Type": content_type} if content_type else {})}
    response = httpx.post(
        url, content=httpx.Request("POST", url, json=body).content, headers=headers
    )
    refused(response, 415, "Content-Type", "application/json")


@DOORS
def test_application_json_with_a_charset_passes(doors, door):
    url = f"http://127.0.0.1:{doors.port(door)}/{'run' if door == 'rest' else 'mcp'}"
    body = run_body("true") if door == "rest" else TOOLS_LIST
    headers = {**MCP_HEADERS, "Content-Type": "application/json; charset=utf-8"}
    response = httpx.post(
        url, content=httpx.Request("POST", url, json=body).content, headers=headers
    )
    assert response.status_code == 200, response.text


def test_multipart_is_for_the_rest_door_only(doors):
    parts = {"request": (None, httpx.Request("POST", "/", json=run_body("true")).content)}
    assert httpx.post(f"http://127.0.0.1:{doors.rest}/run", files=parts).status_code == 200
    response = httpx.post(f"http://127.0.0.1:{doors.mcp}/mcp", files=parts, headers=MCP_HEADERS)
    refused(response, 415, "Content-Type", "application/json")
