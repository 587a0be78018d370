"""A real OpenID provider for the identity tests: Ory Hydra with its sign-in app (scripts/idp),
started on free loopback ports for this copy of the suite and stopped after it.

`scripts/idp.sh build` gives the binary (cached; scripts/ci-provision.sh builds it ahead). The
fixture fails the test loudly when it cannot be built or started. Everything lives in the
provider's memory: clients, keys and tokens made here go with it.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, free_port

START_SECONDS = 60
USER = "alice"


@dataclass(frozen=True)
class Client:
    id: str
    secret: str


class Provider:
    """The running provider: `issuer` (its public URL) and `admin` (Hydra's admin API)."""

    def __init__(self, issuer: str, admin: str) -> None:
        self.issuer = issuer
        self.admin = admin
        self.http = httpx.Client(timeout=30)

    def client(
        self,
        audience: list[str],
        *,
        scope: str = "runs",
        opaque: bool = False,
        name: str | None = None,
        lifespan: str | None = None,
    ) -> Client:
        """A confidential client for the client-credentials grant: its tokens name `sub` =
        its id. `opaque`: its access tokens are opaque (introspection only)."""
        client = Client(name or f"svc-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex)
        body = {
            "client_id": client.id,
            "client_secret": client.secret,
            "grant_types": ["client_credentials"],
            "audience": audience,
            "scope": scope,
            "access_token_strategy": "opaque" if opaque else "jwt",
        }
        self._admin("POST", "/admin/clients", body)
        if lifespan is not None:
            lifespans = {"client_credentials_grant_access_token_lifespan": lifespan}
            self._admin("PUT", f"/admin/clients/{client.id}/lifespans", lifespans)
        return client

    def token(self, client: Client, audience: str, scope: str = "runs") -> str:
        """An access token of `client` for `audience`, from the token endpoint."""
        response = self.http.post(
            f"{self.issuer}/oauth2/token",
            data={"grant_type": "client_credentials", "audience": audience, "scope": scope},
            auth=(client.id, client.secret),
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def signing_kids(self) -> list[str]:
        keys = self._admin("GET", "/admin/keys/hydra.jwt.access-token")["keys"]
        return [str(key["kid"]) for key in keys]

    def rotate_keys(self) -> str:
        """A new access-token signing key, and the old ones retired: returns the new key id."""
        old = self.signing_kids()
        kid = f"rotated-{uuid.uuid4().hex[:8]}"
        body = {"alg": "RS256", "kid": kid, "use": "sig"}
        self._admin("POST", "/admin/keys/hydra.jwt.access-token", body)
        for retired in old:
            self._admin("DELETE", f"/admin/keys/hydra.jwt.access-token/{retired}")
        return kid

    def _admin(self, method: str, path: str, body: object = None) -> dict:  # type: ignore[type-arg]
        response = self.http.request(method, f"{self.admin}{path}", json=body)
        assert response.status_code < 300, f"{method} {path}: {response.text}"
        return response.json() if response.content else {}


def provider_binary() -> Path:
    """The provider program, built (minutes, once) if the cache lacks it."""
    built = subprocess.run(
        ["bash", str(ROOT / "scripts" / "idp.sh"), "build"],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        pytest.fail(f"scripts/idp.sh build failed:\n{built.stderr[-3000:]}", pytrace=False)
    return Path(built.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def running_provider(log: Path) -> Iterator[Provider]:
    """A provider of its own on free loopback ports, ready; stopped on leaving."""
    binary = provider_binary()
    public, admin, login = (f"127.0.0.1:{free_port()}" for _ in range(3))
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(binary),
                "serve",
                "--public",
                public,
                "--admin",
                admin,
                "--login",
                login,
                "--user",
                USER,
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(process, f"http://{admin}/health/ready", log)
        provider = Provider(f"http://{public}", f"http://{admin}")
        with provider.http:
            yield provider
    finally:
        process.terminate()
        process.wait(30)


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    process.wait(30)
    pytest.fail(f"the OpenID provider did not start:\n{log.read_text()[-3000:]}", pytrace=False)


@pytest.fixture(scope="session")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    """The suite's OpenID provider (one per copy of the suite)."""
    with running_provider(tmp_path_factory.mktemp("idp") / "idp.log") as running:
        yield running
