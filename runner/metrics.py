"""Prometheus metrics of one service: runs by outcome, phase durations, queue and in-flight.

Each service has its own registry, so several apps in one process (tests) never collide.
Tenant names are labels only when the operator asks (`RUNNER_METRICS_TENANTS`): they tell
whoever reads /metrics who else uses the runner.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PHASE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    def __init__(
        self, running: Callable[[], int], waiting: Callable[[], int], *, tenants: bool = False
    ) -> None:
        self.registry = CollectorRegistry()
        self.tenants = tenants
        self.runs = Counter(
            "oneoff_runner_runs",
            "Runs by outcome: success, error (non-zero exit), timeout, or the refusal's code; "
            "and by tenant (its name) with RUNNER_METRICS_TENANTS.",
            ["tenant", "outcome"] if tenants else ["outcome"],
            registry=self.registry,
        )
        self.phases = Histogram(
            "oneoff_runner_phase_seconds",
            "Time spent in each phase of a run (pull, prepare, create, run, collect, cleanup; "
            "warm: taking a warm container, for runs that took one).",
            ["phase"],
            buckets=PHASE_BUCKETS,
            registry=self.registry,
        )
        in_flight = Gauge(
            "oneoff_runner_runs_in_flight", "Runs executing now.", registry=self.registry
        )
        in_flight.set_function(running)
        queued = Gauge(
            "oneoff_runner_runs_queued", "Runs waiting for a slot.", registry=self.registry
        )
        queued.set_function(waiting)

    def record(self, tenant: str, outcome: str, phases: dict[str, float]) -> None:
        labels = {"tenant": tenant, "outcome": outcome} if self.tenants else {"outcome": outcome}
        self.runs.labels(**labels).inc()
        for phase, seconds in phases.items():
            self.phases.labels(phase=phase).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
