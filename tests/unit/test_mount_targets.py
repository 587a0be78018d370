"""Where a mount lands, walked as the runtime resolves it (`backends.docker.targets`, over a
table of symlinks standing in for the engine's stats), and the policy's refusal of mounts inside
a named volume or host path, whose content may change before a run starts."""

from __future__ import annotations

import pytest

from backends.docker.targets import MAX_LINKS, check_targets, walk
from runner.errors import InvalidRequest
from runner.models import RunRequest
from runner.policy import build_run_spec
from runner.spec import MountSpec, placed
from runner.tenancy import LOCAL


def links(table: dict[str, str]):  # type: ignore[no-untyped-def]
    """`LinkOf` over `table` (a symlink's path: where it leads, resolved), recording each ask."""
    asked: list[str] = []

    def link_of(path: str) -> str | None:
        asked.append(path)
        return table.get(path)

    link_of.asked = asked  # type: ignore[attr-defined]
    return link_of


def mount(path: str, kind: str = "directory") -> MountSpec:
    return MountSpec(key=path, path=path, read_only=False, kind=kind)


def test_a_path_without_symlinks_lands_where_it_is_written_after_one_ask_per_component():
    link_of = links({})
    assert walk("/a/b/c", link_of) == ["/a/b/c"]
    assert link_of.asked == ["/a", "/a/b", "/a/b/c"]


def test_a_symlink_on_the_way_is_followed_and_only_the_rest_asked_again():
    link_of = links({"/a/b": "/x/y", "/x/y/c": "/dev/shm"})
    assert walk("/a/b/c/d", link_of) == ["/a/b/c/d", "/x/y/c/d", "/dev/shm/d"]
    assert link_of.asked == ["/a", "/a/b", "/x/y/c"]


def test_a_path_through_more_symlinks_than_the_kernel_follows_is_refused():
    """The engine tells each symlink's end fully resolved, so every link takes one component
    of the path: 42 components, each a link."""
    table = {"/c": "/d1", **{f"/d{i}/c": f"/d{i + 1}" for i in range(1, MAX_LINKS + 2)}}
    target = "/c" * (MAX_LINKS + 2)
    with pytest.raises(InvalidRequest, match="more than 40 symlinks") as caught:
        check_targets([mount(target)], links(table))
    assert caught.value.field == f"volumes[{target!r}]"


@pytest.mark.parametrize("lands", ["/dev/shm", "/dev", "/proc/sys", "/sys/fs/cgroup"])
def test_a_mount_led_under_the_kernel_s_filesystems_is_refused_naming_its_key(lands):
    with pytest.raises(InvalidRequest, match=f"to {lands}/x, at or under") as caught:
        check_targets([mount("/work"), mount("/work/s/x")], links({"/work/s": lands}))
    assert caught.value.field == "volumes['/work/s/x']"


@pytest.mark.parametrize("lands", ["/usr", "/devices", "/opt/dev", "/"])
def test_a_mount_led_elsewhere_is_allowed(lands):
    check_targets([mount("/work/s/x")], links({"/work/s": lands}))


def test_a_mount_led_into_a_named_volume_is_refused():
    mounts = [mount("/data", "volume"), mount("/opt/link/x")]
    with pytest.raises(
        InvalidRequest, match="to /data/x, inside the named volume mounted at /data"
    ) as caught:
        check_targets(mounts, links({"/opt/link": "/data"}))
    assert caught.value.field == "volumes['/opt/link/x']"


CACHE = {"type": "volume", "name": "cache"}


@pytest.mark.parametrize(
    ("outer", "inner", "content"),
    [
        (CACHE, "/work/shm:ro", {"type": "directory"}),
        (CACHE, "/work/shm", {"type": "volume", "name": "other"}),
        ({"type": "host", "host_path": "/srv/in"}, "/work/shm", {"type": "directory"}),
    ],
)
def test_the_policy_refuses_a_mount_inside_a_named_volume_or_host_path(
    make_settings, outer, inner, content
):  # type: ignore[no-untyped-def]
    settings = make_settings(allowed_host_paths=["/srv"], allowed_volumes=["cache", "other"])
    request = RunRequest(image="busybox", volumes={"/work": outer, inner: content})
    with pytest.raises(InvalidRequest, match="not inside it") as caught:
        build_run_spec(request, settings, "run-1", LOCAL, lambda name: None)
    assert caught.value.field == f"volumes[{inner!r}]"


def test_writable_content_inside_a_named_volume_is_no_mount_and_passes(make_settings):
    """It is written into the volume (a workspace keeps it), so nothing is mounted there."""
    settings = make_settings(allowed_volumes=["cache"])
    volumes = {"/work": CACHE, "/work/app.py": {"type": "file", "content": "eA=="}}
    request = RunRequest(image="busybox", volumes=volumes)
    spec, _ = build_run_spec(request, settings, "run-1", LOCAL, lambda name: None)
    assert [mount.path for mount in placed(spec)] == ["/work"]
