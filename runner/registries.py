"""Which registries the runner lets the engine contact for a caller: no SSRF through an image
reference.

An image reference names the host the engine will connect to (`127.0.0.1:6379/x` makes it send
HTTP requests to a loopback service; the engine treats 127.0.0.0/8 as an insecure registry by
default, so it speaks plain HTTP there). A registry whose host is, or resolves to, anything but a
public address (loopback, link-local, private, CGNAT, unspecified, multicast, reserved, and the
IPv4-mapped and NAT64 forms of these) is refused unless the operator lists it in
`RUNNER_ALLOWED_REGISTRIES`; so is a name that does not resolve here (the engine's resolver may
read it otherwise: Go resolves `localhost.`, glibc does not).

Name resolution blocks: the policy runs in worker threads, never on the event loop. Docker Hub
(no registry in the reference, `docker.io`, `index.docker.io`) is never looked up: the engine
maps it to its own endpoints (or the operator's mirrors), which no caller chooses.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable

from runner.errors import PolicyRefused

DOCKER_HUB = "docker.io"
HUB_NAMES = frozenset({DOCKER_HUB, "index.docker.io"})
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str], list[str]]


def domain_of(image: str) -> str:
    """The registry of a reference as the engine reads it: `host[:port]`, or Docker Hub's
    `docker.io` when it names none."""
    if not names_registry(image):
        return DOCKER_HUB
    first = image.partition("/")[0]
    return DOCKER_HUB if first == "index.docker.io" else first


def names_registry(image: str) -> bool:
    """Whether the reference starts with a registry: a first component (of several) holding a
    `.` or a `:`, or `localhost`, or with capitals (distribution's `splitDockerDomain`)."""
    first, slash, _ = image.partition("/")
    return bool(slash) and (
        any(mark in first for mark in ".:") or first == "localhost" or first.lower() != first
    )


def check_registry(image: str, allowed: Iterable[str], resolve: Resolve | None = None) -> None:
    """Refuse (403 naming `image` and `RUNNER_ALLOWED_REGISTRIES`) a reference whose registry is
    not public, unless `allowed` (globs over `host[:port]`) lists it. Blocking: may resolve."""
    domain = domain_of(image)
    if domain in HUB_NAMES or any(_glob(entry).fullmatch(domain.lower()) for entry in allowed):
        return
    host = _host(domain)
    addresses = _literal(host)
    if addresses is None:
        addresses = _parsed((resolve or resolve_host)(host)) if not _local_name(host) else []
    if not addresses or not all(public(address) for address in addresses):
        raise PolicyRefused(
            f"image: the registry {domain!r} of {image!r} is not a public one (it is, or its name "
            "resolves to, a loopback, link-local or private address, or does not resolve here), "
            "and the runner lets the engine contact such a registry only when the operator lists "
            "it in RUNNER_ALLOWED_REGISTRIES",
            field="image",
        )


def resolve_host(host: str) -> list[str]:
    """Every address the host resolves to here; none when it does not resolve."""
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        return []
    return [str(entry[4][0]) for entry in found]


def public(address: Address) -> bool:
    """A global unicast address, also once unwrapped from the IPv6 forms that reach IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not public(embedded):
            return False
    special = (
        address.is_private,
        address.is_loopback,
        address.is_link_local,
        address.is_unspecified,
        address.is_multicast,
        address.is_reserved,  # ::/8 holds IPv4-compatible forms, which is_global lets through
        isinstance(address, ipaddress.IPv6Address) and address.is_site_local,
    )
    return address.is_global and not any(special)


def _host(domain: str) -> str:
    """The host of `host[:port]` or `[v6]:port`, without brackets or a final dot, lowercased."""
    if domain.startswith("["):
        return domain[1:].partition("]")[0].lower()
    host = domain.partition(":")[0]
    return host.rstrip(".").lower()


def _local_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def _literal(host: str) -> list[Address] | None:
    try:
        return [ipaddress.ip_address(host.partition("%")[0])]
    except ValueError:
        return None


def _parsed(addresses: list[str]) -> list[Address]:
    parsed = [_literal(address) for address in addresses]
    return [found[0] for found in parsed if found]


def _glob(pattern: str) -> re.Pattern[str]:
    """`*` and `?` as in a shell; everything else literal (`[::1]:5000` names an IPv6 host)."""
    escaped = re.escape(pattern.strip().lower())
    return re.compile(escaped.replace(r"\*", ".*").replace(r"\?", "."))
