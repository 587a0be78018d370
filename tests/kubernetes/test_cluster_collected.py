"""The real-cluster tests cannot run here, but they are collected: importable, and selected by
`-m cluster` (tests/conftest.py deselects them unless `-m` names them)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT

MODULES = [
    "tests/kubernetes/test_cluster.py",
    "tests/kubernetes/test_cluster_resilience.py",
    "tests/kubernetes/test_cluster_settings.py",
    "tests/kubernetes/test_cluster_helm.py",
    "tests/kubernetes/test_cluster_faults.py",
]
EXPECTED = {
    "test_an_api_server_blip_during_a_run_neither_fails_nor_deletes_it[sync]",
    "test_an_api_server_blip_during_a_run_neither_fails_nor_deletes_it[async]",
    "test_a_restricted_namespace_admits_the_runner_s_pods",
    "test_a_pod_pod_security_refuses_is_a_403_with_its_reason",
    "test_a_quota_that_frees_up_lets_the_waiting_run_start",
    "test_open_egress_reaches_dns_but_not_metadata_or_private_ranges",
    "test_the_generated_token_survives_helm_upgrade",
    "test_returned_content_past_the_kubernetes_bound_is_a_413",
    "test_runtime_class_and_scratch_size_reach_a_real_pod",
    "test_the_chart_s_role_gives_runs_what_they_need_and_no_secret",
    "test_helm_upgrade_keeps_the_token_and_the_runs",
    "test_a_deleted_runner_pod_is_replaced_and_its_async_run_answered",
    "test_helm_uninstall_leaves_no_run_object",
    "test_a_restart_under_a_run_neither_fails_nor_loses_it[kube-apiserver]",
    "test_a_restart_under_a_run_neither_fails_nor_loses_it[kubelet]",
    "test_a_run_no_node_has_the_cpu_for_is_the_documented_503",
}


def collected(*options: str) -> set[str]:
    found = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        + [*options, *MODULES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "error" not in found.stdout.lower(), found.stdout
    return {line.split("::")[-1] for line in found.stdout.splitlines() if "::" in line}


def test_the_cluster_cases_are_collected_with_the_marker() -> None:
    assert EXPECTED <= collected("-m", "cluster")
