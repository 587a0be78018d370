"""A web page in the operator's browser attacks a token-less runner on loopback, as the most
common deployment runs (`oneoff-runner serve` on a laptop): both doors, the real engine.

The page is served by the test from another loopback port (another origin: an attacker's site,
or any dev server) and loaded in headless Chromium, which sends what a browser sends: simple
cross-origin requests need no CORS preflight (`mode: 'no-cors'`, a `text/plain` body, a
multipart form). The page cannot read the answers; the attack is the run itself, so the engine
is the witness: no container may be made by that runner (its instance label)."""

from __future__ import annotations

import html
import json
import re
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import docker
import httpx
import pytest

from tests.browser import load, page_server
from tests.docker.watching import containers_made, stop
from tests.helpers import (
    free_port,
    instance_id,
    managed_objects,
    remove_objects_of,
    run_body,
    start_runner,
)

pytestmark = pytest.mark.chromium
ATTACK = run_body("echo", "pwned")
TOOL_CALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {"name": "run_container", "arguments": ATTACK},
}
MCP_ACCEPT = "application/json, text/event-stream"
LISTED = "runner.test"
SENT = "REQUEST-SENT"
"""What the page writes once the runner answered its request (a failed fetch writes FAILED)."""


@dataclass(frozen=True)
class Runner:
    instance: str
    rest: str
    mcp: str


@pytest.fixture(scope="module")
def runner(docker_client: docker.DockerClient) -> Iterator[Runner]:
    """`oneoff-runner serve` without tokens, on 127.0.0.1: REST and MCP; it also answers to the
    name `runner.test`, as an operator who lists it."""
    instance, rest_port, mcp_port = instance_id("browser"), free_port(), free_port()
    process = start_runner(instance, rest_port, mcp_port, allowed_hosts=LISTED)
    try:
        yield Runner(instance, f"http://127.0.0.1:{rest_port}", f"http://127.0.0.1:{mcp_port}/mcp")
    finally:
        stop(process)
        remove_objects_of(docker_client, instance)


def no_cors_post(url: str, body: object, **headers: str) -> str:
    """A page that POSTs `body` as JSON text with `fetch(..., {mode: 'no-cors'})`."""
    options = {
        "method": "POST",
        "mode": "no-cors",
        "body": json.dumps(body),
        "headers": {"Content-Type": "text/plain", **headers},
    }
    return f"""<!doctype html><body><script>
fetch({json.dumps(url)}, {json.dumps(options)}).then(
  () => document.body.append({json.dumps(SENT)}),
  (error) => document.body.append("FAILED " + error));
</script></body>"""


def attacked(
    docker_client: docker.DockerClient, runner: Runner, page: str
) -> tuple[str, list[str]]:
    """Load `page` from another origin; the DOM after its scripts ran, and the roles of the
    containers the runner made meanwhile."""
    with page_server({"/": page}) as site, containers_made(docker_client, runner.instance) as made:
        dom = load(f"{site}/").dom
    return dom, made


def test_a_no_cors_post_to_run_makes_no_container(docker_client, runner):
    dom, made = attacked(docker_client, runner, no_cors_post(f"{runner.rest}/run", ATTACK))
    assert made == []
    assert SENT in dom  # the request reached the runner, which answered


def test_a_no_cors_post_to_runs_starts_no_run(docker_client, runner):
    dom, made = attacked(docker_client, runner, no_cors_post(f"{runner.rest}/runs", ATTACK))
    assert made == []
    assert SENT in dom
    assert managed_objects(docker_client, runner.instance) == []  # no record of a run either


def test_an_auto_submitted_multipart_form_to_run_makes_no_container(docker_client, runner):
    form = f"""<!doctype html><body>
<form method="post" enctype="multipart/form-data" action="{runner.rest}/run">
<input type="hidden" name="request" value="{html.escape(json.dumps(ATTACK))}">
</form><script>document.forms[0].submit()</script></body>"""
    dom, made = attacked(docker_client, runner, form)
    assert made == []
    assert "origin_refused" in dom  # the page navigated to the runner's refusal


def test_a_no_cors_tool_call_to_the_mcp_door_makes_no_container(docker_client, runner):
    page = no_cors_post(runner.mcp, TOOL_CALL, Accept=MCP_ACCEPT)
    dom, made = attacked(docker_client, runner, page)
    assert made == []
    assert SENT in dom


# ---- reading answers ----------------------------------------------------------------------------

READS = """<!doctype html><body><pre id="answers"></pre><script>
(async () => {
  const answers = {};
  for (const [name, url, init] of ATTEMPTS) {
    try {
      const response = await fetch(url, init);
      answers[name] = [response.status, await response.text()];
    } catch (error) {
      answers[name] = ["FAILED", String(error)];
    }
  }
  document.getElementById("answers").textContent = JSON.stringify(answers);
})();
</script></body>"""
"""A page that makes each of ATTEMPTS ([name, url, fetch options]) and writes down what it
could read of each answer: [status, body], or ["FAILED", why]."""


def reads(attempts: dict[str, tuple[str, dict[str, object]]]) -> str:
    listed = [[name, url, init] for name, (url, init) in attempts.items()]
    return READS.replace("ATTEMPTS", json.dumps(listed))


def answers_read(dom: str) -> dict[str, list[object]]:
    found = re.search(r'<pre id="answers">(.*?)</pre>', dom, re.S)
    assert found is not None and found[1], dom[-2000:]
    return json.loads(html.unescape(found[1]))  # type: ignore[no-any-return]


def json_post(body: object, **headers: str) -> dict[str, object]:
    """What a page's `fetch` sends as a JSON API call: not a simple request, so preflighted
    when cross-origin."""
    return {
        "method": "POST",
        "body": json.dumps(body),
        "headers": {"Content-Type": "application/json", **headers},
    }


def test_a_page_of_another_origin_reads_no_answer_and_runs_nothing(docker_client, runner):
    page = reads(
        {
            "containers": (f"{runner.rest}/containers?managed_only=false&all=true", {}),
            "run": (f"{runner.rest}/run", json_post(ATTACK)),
            "mcp": (runner.mcp, json_post(TOOL_CALL, Accept=MCP_ACCEPT)),
        }
    )
    dom, made = attacked(docker_client, runner, page)
    answers = answers_read(dom)
    assert {name: answer[0] for name, answer in answers.items()} == {
        "containers": "FAILED",  # refused (403), and without CORS answers the page reads nothing
        "run": "FAILED",  # the preflight is refused
        "mcp": "FAILED",
    }
    assert made == []


# ---- DNS rebinding: a page of attacker.example whose name now points at 127.0.0.1 ----------------
# It is its own origin then, so the browser lets it read every answer: the Host header, which
# names the attacker's domain, is all that tells.

REBOUND = "attacker.example"


def test_a_page_under_a_rebound_name_reads_nothing_and_runs_nothing(docker_client, runner):
    """Chromium resolves attacker.example to 127.0.0.1, where the page's own port now reaches
    the runner's doors: same-origin, so the page reads whatever they answer, and its POSTs need
    no preflight."""
    mcp = httpx.URL(runner.mcp)
    behind = {
        "/containers": runner.rest,
        "/run": runner.rest,
        "/mcp": f"http://{mcp.netloc.decode()}",
    }
    page = reads(
        {
            "containers": ("/containers?managed_only=false&all=true", {}),
            "run": ("/run", json_post(ATTACK)),
            "runs": ("/runs", json_post(ATTACK)),
            "mcp": ("/mcp", json_post(TOOL_CALL, Accept=MCP_ACCEPT)),
        }
    )
    with (
        page_server({"/": page}, behind=behind) as site,
        containers_made(docker_client, runner.instance) as made,
    ):
        port = httpx.URL(site).port
        dom = load(f"http://{REBOUND}:{port}/", resolve={REBOUND: "127.0.0.1"}).dom
    answers = answers_read(dom)
    assert {name: answer[0] for name, answer in answers.items()} == dict.fromkeys(answers, 421)
    assert len(answers) == 4
    for _, body in answers.values():  # the page reads the runner's refusal, and nothing else
        assert json.loads(str(body))["error"] == "misdirected_host"
    assert made == []
    assert managed_objects(docker_client, runner.instance) == []


def rebound(url: str) -> dict[str, str]:
    return {"Host": f"{REBOUND}:{httpx.URL(url).port}"}


@pytest.mark.parametrize(
    "path", ["/containers?managed_only=false&all=true", "/runs", "/metrics", "/openapi.json"]
)
def test_under_a_rebound_name_the_rest_door_answers_nothing(runner, path):
    response = httpx.get(f"{runner.rest}{path}", headers=rebound(runner.rest))
    assert response.status_code == 421
    assert response.json()["field"] == "Host"


def test_under_a_rebound_name_no_door_runs_anything(docker_client, runner):
    mcp_headers = {**rebound(runner.mcp), "Accept": MCP_ACCEPT}
    with containers_made(docker_client, runner.instance) as made:
        by_rest = httpx.post(f"{runner.rest}/run", json=ATTACK, headers=rebound(runner.rest))
        by_mcp = httpx.post(runner.mcp, json=TOOL_CALL, headers=mcp_headers)
    assert (by_rest.status_code, by_mcp.status_code) == (421, 421)
    assert made == []


def test_a_listed_host_name_reaches_both_doors(docker_client, runner):
    rest = httpx.post(f"{runner.rest}/run", json=ATTACK, headers={"Host": LISTED}, timeout=60)
    assert rest.status_code == 200
    assert rest.json()["stdout"] == "pwned\n"
    mcp_headers = {"Host": f"{LISTED}:{httpx.URL(runner.mcp).port}", "Accept": MCP_ACCEPT}
    mcp = httpx.post(runner.mcp, json=TOOL_CALL, headers=mcp_headers, timeout=60)
    assert mcp.status_code == 200
    assert '"pwned\\n"' in mcp.text


OLD_FIREFOX = "Mozilla/5.0 (Windows NT 6.1; Win64; x64; rv:60.0) Gecko/20100101 Firefox/60.0"
"""A browser of 2018: it sends a cross-site form's POST with neither `Origin` nor
`Sec-Fetch-Site`, so only its `User-Agent` tells that a browser sent it."""


def old_browser_post(url: str, content_type: str, body: bytes) -> tuple[int, dict[str, object]]:
    """POST `body` over a raw socket with the headers an old browser sends for a page's form;
    the answer's status and JSON body."""
    target = httpx.URL(url)
    head = (
        f"POST {target.raw_path.decode()} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        f"User-Agent: {OLD_FIREFOX}\r\n"
        "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
        "Accept-Language: en-US,en;q=0.5\r\nReferer: http://attacker.example/\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\nUpgrade-Insecure-Requests: 1\r\n\r\n"
    )
    with socket.create_connection((target.host, target.port), timeout=60) as sock:
        sock.sendall(head.encode() + body)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def form_body(boundary: str) -> bytes:
    """The multipart body an old browser sends for the attacker's form of one `request` field."""
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="request"\r\n\r\n'
        f"{json.dumps(ATTACK)}\r\n--{boundary}--\r\n"
    ).encode()


@pytest.mark.parametrize("path", ["/run", "/runs"])
def test_an_old_browser_s_cross_site_form_makes_no_container(docker_client, runner, path):
    boundary = "---------------------------1950542012118457316891396486"
    with containers_made(docker_client, runner.instance) as made:
        status, body = old_browser_post(
            f"{runner.rest}{path}", f"multipart/form-data; boundary={boundary}", form_body(boundary)
        )
    assert (status, body["error"], body["field"]) == (403, "origin_refused", "User-Agent")
    assert "RUNNER_API_TOKENS" in str(body["message"])
    assert made == []


def test_an_old_browser_s_post_to_the_mcp_door_makes_no_container(docker_client, runner):
    with containers_made(docker_client, runner.instance) as made:
        status, body = old_browser_post(runner.mcp, "text/plain", json.dumps(TOOL_CALL).encode())
    assert (status, body["field"]) == (403, "User-Agent")
    assert made == []


def test_curl_s_form_post_still_runs(runner):
    """`curl -F` sends neither `Origin` nor `Sec-Fetch-Site` either, and says it is curl."""
    answer = subprocess.run(
        [
            "curl",
            "-sS",
            "-F",
            f"request={json.dumps(ATTACK)};type=application/json",
            f"{runner.rest}/run",
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    assert json.loads(answer.stdout)["stdout"] == "pwned\n", answer.stdout
