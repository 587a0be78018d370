"""Backends run containers; `get_backend` is the only place that chooses one."""

from __future__ import annotations

from runner.backend import Backend
from runner.settings import Settings


def get_backend(settings: Settings) -> Backend:
    if settings.backend == "docker":
        from backends.docker.engine import DockerBackend

        return DockerBackend(settings)
    from backends.kubernetes.jobs import KubernetesBackend

    return KubernetesBackend(settings)
