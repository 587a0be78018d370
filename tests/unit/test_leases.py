"""Ownership on a shared engine: leases, and what a reaper may remove given one listing."""

from __future__ import annotations

import time

from backends.docker.reaping import Listing, containers_to_remove, volumes_to_remove
from backends.labels import (
    ASYNC_ROLE,
    CONTAINER,
    DEADLINE,
    DELIVERED_ROLE,
    HOSTS_ROLE,
    LEASE_ROLE,
    OWNER,
    POOL_ROLE,
    RECORD_ROLE,
    ROLE,
    RUN_ID,
)
from backends.leases import Lease, live_owners
from runner.settings import Settings

NOW = 1_800_000_000.0
LIVE, GONE, MINE = "a" * 32, "b" * 32, "c" * 32


def test_the_default_instance_id_is_new_for_every_runner():
    assert Settings().instance_id != Settings().instance_id


def test_renewing_makes_the_next_lease_before_removing_the_previous():
    calls: list[tuple[str, str]] = []
    lease = Lease(
        "runner",
        30,
        lambda name, _: calls.append(("create", name)),
        lambda name: calls.append(("delete", name)),
    )
    lease.renew()
    lease.renew()
    lease.release()
    first, second = (f"oneoff-lease-{lease.owner}-{n}" for n in (1, 2))
    assert calls == [("create", first), ("create", second), ("delete", first), ("delete", second)]


def test_hold_renews_only_once_a_third_of_the_lease_has_passed():
    made: list[dict[str, str]] = []
    lease = Lease("runner", 30, lambda _, labels: made.append(labels), lambda _: None)
    lease.hold()
    lease.hold()
    assert len(made) == 1
    assert int(made[0][DEADLINE]) >= time.time() + 29
    assert made[0][OWNER] == lease.owner and made[0][ROLE] == LEASE_ROLE


def test_two_leases_never_share_an_owner_whatever_the_instance_id():
    assert Lease("same", 30, print, print).owner != Lease("same", 30, print, print).owner


def test_an_expired_lease_proves_its_owner_gone():
    leases = [{OWNER: LIVE, DEADLINE: str(NOW + 5)}, {OWNER: GONE, DEADLINE: str(NOW - 1)}]
    assert live_owners(leases, NOW) == {LIVE}


def labelled(role: str, owner: str | None, run_id: str = "r", deadline: float = NOW + 600):
    labels = {ROLE: role, RUN_ID: run_id, DEADLINE: str(deadline)}
    return labels if owner is None else {**labels, OWNER: owner}


def listing(containers: list[dict], volumes: list[dict]) -> Listing:  # type: ignore[type-arg]
    return Listing(
        containers=containers,
        volumes=volumes,
        leases=[{"Labels": labelled(LEASE_ROLE, LIVE)}],
        now=NOW,
        own=MINE,
    )


def test_runs_of_a_runner_without_a_lease_go_and_live_runners_runs_stay():
    containers = [
        {"Id": "gone", "Labels": labelled("run", GONE)},
        {"Id": "live", "Labels": labelled("run", LIVE)},
        {"Id": "mine", "Labels": labelled("run", MINE)},
        {"Id": "old", "Labels": labelled("run", None)},
        {"Id": "expired", "Labels": labelled("run", LIVE, deadline=NOW - 1)},
        {"Id": "async", "Labels": labelled(ASYNC_ROLE, GONE)},
    ]
    assert containers_to_remove(listing(containers, [])) == ["gone", "expired"]


def test_an_async_run_s_volume_goes_only_when_its_launch_died_with_its_runner():
    containers = [{"Id": "c", "Labels": labelled(ASYNC_ROLE, GONE, run_id="started")}]
    volumes = [
        {"Name": "started", "Labels": labelled(ASYNC_ROLE, GONE, run_id="started")},
        {"Name": "died", "Labels": labelled(ASYNC_ROLE, GONE, run_id="died")},
        {"Name": "starting", "Labels": labelled(ASYNC_ROLE, LIVE, run_id="starting")},
        {"Name": "record", "Labels": labelled(RECORD_ROLE, None)},
        {"Name": "delivered", "Labels": labelled(DELIVERED_ROLE, None)},
        {"Name": "old-mark", "Labels": labelled(DELIVERED_ROLE, None, deadline=NOW - 1)},
        {"Name": "old-lease", "Labels": labelled(LEASE_ROLE, GONE, deadline=NOW - 1)},
    ]
    assert volumes_to_remove(listing(containers, volumes)) == ["died", "old-mark", "old-lease"]


def test_a_warm_container_an_async_run_claimed_is_the_runs_to_judge_not_its_makers():
    """Its maker's lease is gone; its claim (role async-run) says whose it is: the container is
    seen with the claim's labels, left to the run's expiry, and the claim stays with it."""
    claim = {**labelled(ASYNC_ROLE, GONE, run_id="run"), CONTAINER: "taken"}
    containers = [
        {"Id": "taken", "Labels": labelled(POOL_ROLE, GONE, run_id="pool-1"), "State": "running"},
        {"Id": "idle", "Labels": labelled(POOL_ROLE, GONE, run_id="pool-2"), "State": "exited"},
    ]
    volumes = [
        {"Name": "oneoff-run-claim", "Labels": claim},
        {"Name": "oneoff-gone-claim", "Labels": {**claim, RUN_ID: "gone", CONTAINER: "removed"}},
    ]
    seen = listing(containers, volumes)
    assert containers_to_remove(seen) == ["idle"]
    assert [(item["Id"], item["Labels"]) for item in seen.async_containers()] == [("taken", claim)]
    assert volumes_to_remove(seen) == ["oneoff-gone-claim"]


def test_a_runner_s_hosts_file_volume_goes_with_its_lease_and_stays_while_it_lives():
    hosts = {ROLE: HOSTS_ROLE}
    volumes = [
        {"Name": "gone", "Labels": {**hosts, OWNER: GONE}},
        {"Name": "live", "Labels": {**hosts, OWNER: LIVE}},
        {"Name": "mine", "Labels": {**hosts, OWNER: MINE}},
    ]
    assert volumes_to_remove(listing([], volumes)) == ["gone"]
