"""Pages loaded in headless Chromium (Debian's `chromium`, from scripts/ci-provision.sh), checked
in the DOM after the page's scripts ran, not in the HTML the server sent."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.helpers import until

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=20000",
    "--enable-logging=stderr",
    "--v=0",
)
CONSOLE = ":CONSOLE"
"""How Chromium marks, in its log, a message of the page's console (errors included)."""


@dataclass(frozen=True)
class Loaded:
    dom: str
    console: list[str]
    """What the page wrote to its console, uncaught errors included."""


def load(url: str, resolve: dict[str, str] | None = None) -> Loaded:
    """The page's DOM once its scripts ran (and fetched what they fetch), from a fresh profile.
    `resolve` maps host names to addresses, as a DNS server the page's author runs would."""
    browser = shutil.which("chromium")
    if browser is None:
        pytest.fail("chromium missing; run scripts/ci-provision.sh", pytrace=False)
    rules = ", ".join(f"MAP {name} {address}" for name, address in (resolve or {}).items())
    resolving = [f"--host-resolver-rules={rules}"] if rules else []
    with tempfile.TemporaryDirectory() as profile:
        process = subprocess.Popen(
            [browser, *CHROMIUM_FLAGS, *resolving, f"--user-data-dir={profile}", "--dump-dom", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=120)
        finally:
            _end(process)
    assert process.returncode == 0, stderr[-2000:]
    console = [line for line in stderr.splitlines() if CONSOLE in line]
    return Loaded(stdout, console)


def _end(process: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """Kill Chromium and every helper it started (its session), so none still writes into the
    profile when the profile's directory is removed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


def rendered(url: str) -> str:
    return load(url).dom


@contextlib.contextmanager
def page_server(pages: dict[str, str], behind: dict[str, str] | None = None) -> Iterator[str]:
    """Serve `pages` (path: HTML) on a loopback port of their own: another origin than any
    runner of the test, as an attacker's site or a dev server would be. Yields the base URL.

    `behind` (path prefix: base URL) forwards requests under a prefix there as they came,
    `Host` and `Origin` included: a site whose name was rebound to 127.0.0.1 (DNS rebinding)
    reaches, as its own origin, whatever listens there."""

    class Pages(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if not self._forwarded():
                self._answer(200 if self.path in pages else 404, [], pages.get(self.path, ""))

        def do_POST(self) -> None:
            if not self._forwarded():
                self._answer(405, [], "")

        do_OPTIONS = do_POST

        def _forwarded(self) -> bool:
            upstream = next(
                (url for prefix, url in (behind or {}).items() if self.path.startswith(prefix)),
                None,
            )
            if upstream is None:
                return False
            length = int(self.headers.get("Content-Length") or 0)
            answer = httpx.request(
                self.command,
                upstream + self.path,
                headers=[(name, value) for name, value in self.headers.items()],
                content=self.rfile.read(length),
                timeout=120,
            )
            headers = [
                (name, value)
                for name, value in answer.headers.items()
                if name.lower() not in ("content-length", "transfer-encoding", "connection")
            ]
            self._answer(answer.status_code, headers, answer.text)
            return True

        def _answer(self, status: int, headers: list[tuple[str, str]], text: str) -> None:
            body = text.encode()
            self.send_response(status)
            for name, value in headers or [("Content-Type", "text/html; charset=utf-8")]:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


class Tab:
    """One page of a headless Chromium driven over the DevTools protocol: what a person's
    clicks do, done by the page's own script (`evaluate`)."""

    def __init__(self, socket: ClientConnection, session: str) -> None:
        self.socket = socket
        self.session = session
        self.sent = 0

    def command(self, method: str, session: bool = True, **params: Any) -> dict[str, Any]:
        self.sent += 1
        message = {"id": self.sent, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.socket.send(json.dumps(message))
        while True:
            answer = json.loads(self.socket.recv(timeout=120))
            if answer.get("id") == self.sent:
                assert "error" not in answer, answer
                return answer["result"]  # type: ignore[no-any-return]

    def evaluate(self, expression: str) -> Any:
        """The value of `expression` in the page (a promise is awaited); a page error fails."""
        result = self.command(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")


@contextlib.contextmanager
def tab(url: str) -> Iterator[Tab]:
    """A fresh headless Chromium showing `url`, once its document has loaded."""
    browser = shutil.which("chromium")
    if browser is None:
        pytest.fail("chromium missing; run scripts/ci-provision.sh", pytrace=False)
    with tempfile.TemporaryDirectory() as profile:
        flags = [flag for flag in CHROMIUM_FLAGS if not flag.startswith("--virtual-time")]
        process = subprocess.Popen(
            [browser, *flags, "--remote-debugging-port=0", f"--user-data-dir={profile}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            until(lambda: port_file.exists() and len(port_file.read_text().split()) == 2, 60)
            port, path = port_file.read_text().split()
            with connect(f"ws://127.0.0.1:{port}{path}", max_size=None) as socket:
                opened = Tab(socket, "")
                target = opened.command("Target.createTarget", session=False, url="about:blank")
                attached = opened.command(
                    "Target.attachToTarget",
                    session=False,
                    targetId=target["targetId"],
                    flatten=True,
                )
                opened.session = attached["sessionId"]
                opened.command("Page.navigate", url=url)
                opened.evaluate(LOADED)
                yield opened
        finally:
            _end(process)


LOADED = """new Promise((done) => {
  const check = () => document.readyState === "complete" && location.href !== "about:blank"
    ? done(true) : setTimeout(check, 50);
  check();
})"""
