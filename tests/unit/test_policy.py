"""The operator's policy: what a run may use, refused with 403 and the rule that refused."""

from __future__ import annotations

import pytest

from runner.errors import PolicyRefused
from runner.models import RunRequest
from runner.policy import build_run_spec
from runner.tenancy import LOCAL


def spec_for(settings, **fields):  # type: ignore[no-untyped-def]
    request = RunRequest(**{"image": "busybox", **fields})
    spec, _ = build_run_spec(request, settings, "run-1", LOCAL, lambda name: None)
    return spec


@pytest.mark.parametrize(
    ("patterns", "image", "allowed"),
    [
        (["*"], "anything/at:all", True),
        (["docker.io/library/*"], "python:3.12", True),
        (["docker.io/library/*"], "evil/python:3.12", False),
        (["registry.example.com/"], "registry.example.com/team/app:1", True),
        (["registry.example.com/"], "registry.example.com.evil.io/app:1", False),
        (["python:*", "busybox*"], "busybox", True),
        (["python:*"], "busybox", False),
        ([], "busybox", False),
    ],
)
def test_images_are_checked_against_the_allow_list(make_settings, patterns, image, allowed):
    settings = make_settings(allowed_images=patterns, allowed_registries=["registry.example.com"])
    if allowed:
        assert spec_for(settings, image=image).image == image
    else:
        with pytest.raises(PolicyRefused) as caught:
            spec_for(settings, image=image)
        assert "RUNNER_ALLOWED_IMAGES" in caught.value.message
        assert caught.value.field == "image"


@pytest.mark.parametrize("network", ["host", "container:abc123"])
def test_host_and_container_namespaces_are_never_allowed(make_settings, network):
    settings = make_settings(allowed_networks=["none", "bridge", "host", network])
    with pytest.raises(PolicyRefused, match="never allowed"):
        spec_for(settings, network=network)


@pytest.mark.parametrize("host_path", ["/var/run/docker.sock", "/var/run", "/run", "/"])
def test_the_engine_socket_is_never_mounted_even_under_an_allowed_prefix(make_settings, host_path):
    settings = make_settings(allowed_host_paths=["/"])
    volumes = {"/h": {"type": "host", "host_path": host_path}}
    with pytest.raises(PolicyRefused, match="socket"):
        spec_for(settings, volumes=volumes)


def test_a_custom_docker_host_socket_is_protected_too(make_settings):
    settings = make_settings(allowed_host_paths=["/srv"], docker_host="unix:///srv/d/engine.sock")
    with pytest.raises(PolicyRefused, match="socket"):
        spec_for(settings, volumes={"/h": {"type": "host", "host_path": "/srv/d"}})
    assert spec_for(settings, volumes={"/h": {"type": "host", "host_path": "/srv/data"}}).mounts


def test_host_path_prefix_is_a_path_prefix_not_a_string_prefix(make_settings):
    settings = make_settings(allowed_host_paths=["/srv/data"])
    with pytest.raises(PolicyRefused):
        spec_for(settings, volumes={"/h": {"type": "host", "host_path": "/srv/database"}})
    with pytest.raises(PolicyRefused):
        spec_for(settings, volumes={"/h": {"type": "host", "host_path": "/srv/data/../etc"}})
