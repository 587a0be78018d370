"""What a web page in the operator's browser could make a runner do, judged before either HTTP
door sees a request (`runner.guards` puts `BrowserPolicy.judge` in front of both).

A page can make the browser send requests to a runner on loopback: simple cross-origin POSTs
need no CORS preflight (`fetch(..., {mode: 'no-cors'})` with a `text/plain` body, a multipart
form), and under DNS rebinding a page of `attacker.example` reaches 127.0.0.1 as its own origin
and reads the answers. So, in this order:

1. `Host` must be a name the runner serves: a loopback name (`localhost`, `127.0.0.1`, `[::1]`,
   any port) or one of `RUNNER_ALLOWED_HOSTS`; else 421. The check is off when API tokens are
   required and no hosts are listed (a page cannot send a token); with tokens, the probe paths
   skip it (probes call by address, and those paths need no token anyway).
2. A present `Origin` must be the request's own (scheme://Host) or one of
   `RUNNER_ALLOWED_ORIGINS`; `null` never; else 403. Another loopback port is another origin.
3. Without an allowed `Origin`, `Sec-Fetch-Site: cross-site` or `same-site` is 403, except a
   top-level GET navigation (a link to /docs from elsewhere), whose answer the page cannot read.
4. Without tokens, a request that changes something (any method but GET, HEAD, OPTIONS) from
   a browser (its `User-Agent` says `Mozilla/`, as every browser's does) that sends neither
   `Origin` nor `Sec-Fetch-Site` is 403: only a browser too old to say where a request comes
   from sends that (browsers of 2019 on send `Sec-Fetch-Site` to loopback; older ones sent no
   `Origin` with a form), so it could be a page's cross-site form. Clients that are not
   browsers (curl, the CLI, SDKs) say no `Mozilla/` and pass.
5. A body (POST, PUT, PATCH) must say what it is: `application/json`, or where the door takes
   it, `multipart/form-data`; else 415. A request without a body (no Content-Length, or 0, and
   no Transfer-Encoding: `POST /runs/{id}/cancel`) has nothing to say.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import Scope

from runner.errors import BrowserRefused, CrossSiteRefused, MisdirectedHost, UnsupportedMediaType

JSON = "application/json"
FORM = "multipart/form-data"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULT_PORTS = {"http": 80, "https": 443}
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
CROSS_SITE = frozenset({"cross-site", "same-site"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BROWSER_AGENT = "mozilla/"
"""How every browser's `User-Agent` begins (and no client that is not one, by default)."""
ANY_PORT = "*"
_HOST = re.compile(
    r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?))"
    r"(?::(?P<port>[0-9]{1,5}|\*))?"
)
_ORIGIN = re.compile(r"(?P<scheme>https?)://(?P<host>[^/]+)/?")
SHOWN = 100
"""How much of a refused header value a message repeats."""


@dataclass(frozen=True)
class Address:
    """A host name (lower case, IPv6 without brackets) and port; `port` None: not written."""

    name: str
    port: int | None
    any_port: bool = False

    def serves(self, other: Address, default_port: int) -> bool:
        """Whether this allowed entry covers `other` (a port not written is `default_port`)."""
        if self.name != other.name:
            return False
        return self.any_port or (self.port or default_port) == (other.port or default_port)


def parse_host(value: str, *, entry: bool = False) -> Address:
    """`name`, `name:port`, `[v6]` or `[v6]:port`, as a Host header writes it; an operator's
    `entry` may also write the port `*` (any)."""
    found = _HOST.fullmatch(value.strip().lower())
    if found is None or (found["port"] == ANY_PORT and not entry):
        raise ValueError(f"{value!r} is not a host name with an optional port")
    port = found["port"]
    number = int(port) if port not in (None, ANY_PORT) else None
    if number is not None and not 0 < number < 65536:
        raise ValueError(f"{value!r}: the port must be 1-65535")
    return Address(found["v6"] or found["name"], number, any_port=port == ANY_PORT)


def host_entry(value: str) -> Address:
    """An entry of RUNNER_ALLOWED_HOSTS: `name` (any port), `name:port` or `name:*`."""
    address = parse_host(value, entry=True)
    return Address(address.name, address.port, any_port=address.any_port or not address.port)


@dataclass(frozen=True)
class Origin:
    scheme: str
    address: Address

    def serves(self, other: Origin) -> bool:
        default = DEFAULT_PORTS[self.scheme]
        return self.scheme == other.scheme and self.address.serves(other.address, default)


def parse_origin(value: str, *, entry: bool = False) -> Origin:
    """`scheme://host[:port]`, as a browser's Origin header writes it (no port: the scheme's);
    an operator's `entry` may write the port `*` (any) and end in `/`."""
    found = _ORIGIN.fullmatch(value.strip().lower())
    if found is None or (found.group(0).endswith("/") and not entry):
        raise ValueError(f"{value!r} is not an origin such as https://runner.example.com")
    return Origin(found["scheme"], parse_host(found["host"], entry=entry))


@dataclass(frozen=True)
class BrowserPolicy:
    """The five checks of the module docstring, for one door."""

    hosts: tuple[Address, ...]
    origins: tuple[Origin, ...]
    check_host: bool
    probe_paths: frozenset[str]
    body_types: frozenset[str]
    tokens: bool = False

    @classmethod
    def of(
        cls,
        *,
        hosts: Collection[str],
        origins: Collection[str],
        tokens: bool,
        probe_paths: Collection[str],
        body_types: Collection[str],
    ) -> BrowserPolicy:
        """From the operator's entries (`RUNNER_ALLOWED_HOSTS`, `RUNNER_ALLOWED_ORIGINS`) and
        whether API tokens are required."""
        return cls(
            hosts=tuple(host_entry(entry) for entry in hosts),
            origins=tuple(parse_origin(entry, entry=True) for entry in origins),
            check_host=checks_host(tokens, hosts),
            probe_paths=frozenset(probe_paths) if tokens else frozenset(),
            body_types=frozenset(body_types),
            tokens=tokens,
        )

    def judge(self, scope: Scope) -> BrowserRefused | None:
        """The refusal of this request, or None when it may go on."""
        headers = Headers(scope=scope)
        scheme = "https" if scope.get("scheme") == "https" else "http"
        host = self._host(headers.get("host", ""), scheme, scope["path"])
        if isinstance(host, BrowserRefused):
            return host
        origin = headers.get("origin")
        if origin is not None:
            if not self._origin_allowed(origin, scheme, host):
                return CrossSiteRefused(
                    f"Origin: {_shown(origin)} may not call this runner (a web page of another "
                    "site or port); the operator lists the origins that may in "
                    "RUNNER_ALLOWED_ORIGINS",
                    field="Origin",
                )
        elif headers.get("sec-fetch-site") in CROSS_SITE and not _navigation(scope, headers):
            return CrossSiteRefused(
                "Sec-Fetch-Site: a web page of another site may not call this runner; the "
                "operator lists the origins that may in RUNNER_ALLOWED_ORIGINS",
                field="Sec-Fetch-Site",
            )
        elif self._old_browser(scope["method"], headers):
            return CrossSiteRefused(
                "User-Agent: a browser that sends neither Origin nor Sec-Fetch-Site (one too "
                "old to say which page sent a request) may not change anything on a runner "
                "without API tokens; use a current browser or a client that is not one (curl, "
                "the CLI, an SDK), or have the operator set RUNNER_API_TOKENS",
                field="User-Agent",
            )
        if not _has_body(headers):
            return None
        return self._body_type(scope["method"], headers.get("content-type"))

    def _old_browser(self, method: str, headers: Headers) -> bool:
        """A state-changing request, without tokens, from a browser that says nothing of the
        page it came from (called when `Origin` is absent)."""
        return (
            not self.tokens
            and method not in SAFE_METHODS
            and "sec-fetch-site" not in headers
            and headers.get("user-agent", "").lstrip().lower().startswith(BROWSER_AGENT)
        )

    def _host(self, value: str, scheme: str, path: str) -> Address | None | BrowserRefused:
        """The request's Host (None when absent or unreadable and not checked), or a refusal."""
        try:
            host: Address | None = parse_host(value)
        except ValueError:
            host = None
        if not self.check_host or path in self.probe_paths:
            return host
        default = DEFAULT_PORTS[scheme]
        if host is not None and (
            host.name in LOOPBACK_NAMES or any(entry.serves(host, default) for entry in self.hosts)
        ):
            return host
        return MisdirectedHost(
            f"Host: {_shown(value)} is not a name this runner serves (a refusal that stops DNS "
            "rebinding); call it as 127.0.0.1 or localhost, or have the operator list the name "
            "in RUNNER_ALLOWED_HOSTS",
            field="Host",
        )

    def _origin_allowed(self, value: str, scheme: str, host: Address | None) -> bool:
        try:
            origin = parse_origin(value)
        except ValueError:
            return False  # `null`, or anything no browser sends
        own = host is not None and Origin(scheme, Address(host.name, host.port)).serves(origin)
        return own or any(entry.serves(origin) for entry in self.origins)

    def _body_type(self, method: str, content_type: str | None) -> BrowserRefused | None:
        if method not in BODY_METHODS:
            return None
        media_type = (content_type or "").split(";")[0].strip().lower()
        if media_type in self.body_types:
            return None
        return UnsupportedMediaType(
            f"Content-Type: {_shown(content_type or '')} is not what this endpoint reads; send "
            f"{' or '.join(sorted(self.body_types))} (curl: -H 'Content-Type: {JSON}')",
            field="Content-Type",
        )


def _has_body(headers: Headers) -> bool:
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers


def checks_host(tokens: bool, hosts: Collection[str]) -> bool:
    """Whether the Host check is on: without tokens, or when the operator lists hosts."""
    return not tokens or bool(hosts)


def _navigation(scope: Scope, headers: Headers) -> bool:
    """A top-level GET navigation: the browser shows the answer to the user, never to a page."""
    return (
        scope["method"] in ("GET", "HEAD")
        and headers.get("sec-fetch-mode") == "navigate"
        and headers.get("sec-fetch-dest", "document") == "document"
    )


def _shown(value: str) -> str:
    return repr(value[:SHOWN] + ("..." if len(value) > SHOWN else ""))
