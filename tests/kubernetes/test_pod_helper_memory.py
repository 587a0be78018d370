"""The pod helper's memory, measured as a process of its own (bench/pod_helper.py: GNU time
around the command run pods use) at the bounds, against the memory the manifests give it: the
collect sidecar lives as long as the run, within its request; neither helper near its limit.
Ratios of a measured peak to a configured size, never timings."""

from __future__ import annotations

from backends.kubernetes.manifests import HELPER_RESOURCES
from bench.pod_helper import MiB, collect_peak, mebibytes, unpack_peak
from runner.settings import Settings


def test_collecting_the_most_a_run_returns_stays_within_the_sidecar_s_request() -> None:
    limit = Settings(_env_file=None).kube_return_limit_bytes  # type: ignore[call-arg]
    peak = collect_peak(limit)
    assert peak / mebibytes(HELPER_RESOURCES["requests"]["memory"]) <= 1.0, peak / MiB


def test_unpacking_the_largest_content_stays_well_within_the_limit() -> None:
    """1 MiB of base64 that unpacks to 64 MiB of zeros: gzip's best ratio, each read inflated
    as a stream (tarfile's own reader held ~36 MiB more)."""
    peak = unpack_peak(64 * MiB)
    assert peak / mebibytes(HELPER_RESOURCES["limits"]["memory"]) <= 0.5, peak / MiB
