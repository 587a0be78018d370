"""Pod Security admission at the `restricted` level, as the fake cluster's admission runs it:
what the real one refuses, in its words."""

from __future__ import annotations

from typing import Any

SAFE_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "projected"}
SAFE_VOLUMES |= {"persistentVolumeClaim", "secret"}


def pod_security_violations(spec: dict[str, Any]) -> list[str]:
    """Pod Security Standards, `restricted` level: what the real admission names."""
    problems = []
    context = spec.get("securityContext") or {}
    containers = [*spec.get("initContainers", []), *spec.get("containers", [])]
    kinds = {kind for volume in spec.get("volumes", []) for kind in volume if kind != "name"}
    if kinds - SAFE_VOLUMES:
        problems.append(f"restricted volume types ({', '.join(sorted(kinds - SAFE_VOLUMES))})")
    for item in containers:
        own = item.get("securityContext") or {}
        name = item["name"]
        if own.get("allowPrivilegeEscalation") is not False:
            problems.append(f'allowPrivilegeEscalation != false (container "{name}")')
        capabilities = own.get("capabilities") or {}
        if "ALL" not in capabilities.get("drop", []):
            problems.append(f'unrestricted capabilities (container "{name}" must drop ALL)')
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f'unrestricted capabilities (container "{name}" adds some)')
        if not own.get("runAsNonRoot", context.get("runAsNonRoot")):
            problems.append(f'runAsNonRoot != true (container "{name}")')
        if own.get("runAsUser", context.get("runAsUser")) == 0:
            problems.append(f'runAsUser=0 (container "{name}")')
        profile = own.get("seccompProfile", context.get("seccompProfile")) or {}
        if profile.get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f'seccompProfile (container "{name}")')
    return problems
