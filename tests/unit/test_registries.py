"""Which registries an image reference may make the engine contact (`runner.registries`), with a
resolver the test controls: no DNS in the fast lane. The real doors and engine:
tests/docker/test_registries.py."""

from __future__ import annotations

import pytest

from runner.errors import PolicyRefused
from runner.registries import check_registry, domain_of

PUBLIC_V4, PUBLIC_V6 = "93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"


def resolver(*addresses: str):  # type: ignore[no-untyped-def]
    asked: list[str] = []

    def resolve(host: str) -> list[str]:
        asked.append(host)
        return list(addresses)

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


def refused(image: str, allowed: list[str] | None = None, *addresses: str) -> bool:
    try:
        check_registry(image, allowed or [], resolver(*addresses))
    except PolicyRefused as exc:
        assert exc.field == "image" and "RUNNER_ALLOWED_REGISTRIES" in exc.message
        return True
    return False


@pytest.mark.parametrize(
    ("image", "domain"),
    [
        ("busybox", "docker.io"),
        ("library/busybox:1", "docker.io"),
        ("index.docker.io/library/busybox", "docker.io"),
        ("localhost/app", "localhost"),
        ("localhost:5000/app", "localhost:5000"),
        ("Registry/app", "Registry"),  # capitals: a host, as the engine reads it
        ("ghcr.io/o/app@sha256:" + "a" * 64, "ghcr.io"),
        ("[::1]:5000/app", "[::1]:5000"),
    ],
)
def test_the_registry_is_read_as_the_engine_reads_it(image: str, domain: str) -> None:
    assert domain_of(image) == domain


@pytest.mark.parametrize(
    "domain",
    [
        "127.0.0.1:8080",
        "127.1",
        "0.0.0.0",
        "169.254.169.254",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "224.0.0.1",
        "240.0.0.1",
        "[::1]",
        "[::]",
        "[::ffff:7f00:1]",
        "[::ffff:a9fe:a9fe]",
        "[64:ff9b::a9fe:a9fe]",
        "[2002:a9fe:a9fe::1]",
        "[fe80::1]",
        "[fc00::1]",
        "[ff02::1]",
    ],
)
def test_literal_addresses_that_are_not_public_are_refused(domain: str) -> None:
    assert refused(f"{domain}/app:1")


@pytest.mark.parametrize("name", ["localhost", "LOCALHOST:5000", "localhost.", "app.localhost"])
def test_localhost_names_are_refused_without_asking_a_resolver(name: str) -> None:
    resolve = resolver(PUBLIC_V4)
    with pytest.raises(PolicyRefused):
        check_registry(f"{name}/app:1", [], resolve)
    assert resolve.asked == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("addresses", "allowed"),
    [
        (["127.0.0.1"], False),
        ([PUBLIC_V4, "10.0.0.5"], False),  # one private answer is enough
        (["::1"], False),
        ([], False),  # does not resolve here: the engine's resolver might read it otherwise
        ([PUBLIC_V4], True),
        ([PUBLIC_V4, PUBLIC_V6], True),
    ],
)
def test_a_name_is_judged_by_every_address_it_resolves_to(
    addresses: list[str], allowed: bool
) -> None:
    assert refused("registry.example.com/app:1", None, *addresses) is not allowed


@pytest.mark.parametrize(
    ("entry", "domain", "listed"),
    [
        ("127.0.0.1:5000", "127.0.0.1:5000", True),
        ("127.0.0.1:5000", "127.0.0.1:5001", False),
        ("127.0.0.1", "127.0.0.1:5000", False),  # a port must be listed
        ("127.0.0.1:*", "127.0.0.1:6379", True),
        ("*.internal", "registry.internal", True),
        ("*.internal", "registry.internal:5000", False),
        ("[::1]:5000", "[::1]:5000", True),
        ("[::1]:5000", "[::2]:5000", False),
        ("Registry.Internal:5000", "registry.internal:5000", True),
    ],
)
def test_the_operator_lists_registries_by_glob(entry: str, domain: str, listed: bool) -> None:
    assert refused(f"{domain}/app:1", [entry], "10.0.0.1") is not listed


def test_docker_hub_is_never_looked_up() -> None:
    resolve = resolver("127.0.0.1")
    for image in (
        "busybox",
        "library/python:3",
        "docker.io/library/busybox",
        "index.docker.io/a/b",
    ):
        check_registry(image, [], resolve)
    assert resolve.asked == []  # type: ignore[attr-defined]
