"""Backends run containers; `get_backend` is the only place that chooses one.

Imports nothing at run time: the pod helper (`backends.kubernetes.pod_helper`, a process in
every Kubernetes run pod) loads this package, and its memory is the run's cost."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.backend import Backend
    from runner.settings import Settings


def get_backend(settings: Settings) -> Backend:
    if settings.backend == "docker":
        from backends.docker.backend import DockerBackend

        return DockerBackend(settings)
    from backends.kubernetes.backend import KubernetesBackend

    return KubernetesBackend(settings)
