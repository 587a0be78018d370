"""How a run pod behaves in the fake cluster: a `Script` the test gives, and helpers for the
usual ones. The fake's kubelet (`fake_cluster`) plays it: it holds the pod in
`ContainerCreating` for `start_delay` seconds (scheduling, image pull), applies `states` in
order, and then, with `hold`, keeps the last state until the pod is deleted or its
`activeDeadlineSeconds` passes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Script:
    """`states`: pod statuses applied in order; `logs`: what each container printed;
    `program(root)`: writes into the unpacked content paths (`root/<index>`) as the user's
    command would; `during(fake)`: called once the pod runs (to break the API server under
    the client, say); `hold`: keep the last state until the pod is deleted or its deadline
    passes."""

    states: list[dict[str, Any]]
    logs: dict[str, bytes] = field(default_factory=dict)
    program: Callable[[Path], None] | None = None
    hold: bool = False
    start_delay: float = 0.0
    during: Callable[[Any], None] | None = None
    collect_cut: int | None = None  # the collect sidecar stopped after this many bytes
    pauses: dict[int, float] = field(default_factory=dict)  # seconds in a state, by index
    unpack_fails: str | None = None  # the unpack init container fails with this message


def status(name: str, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "state": state,
        "ready": False,
        "restartCount": 0,
        "image": "image",
        "imageID": "",
    }


def running() -> dict[str, Any]:
    return {"phase": "Running", "containerStatuses": [status("run", {"running": {}})]}


def finished(exit_code: int, reason: str | None = None) -> dict[str, Any]:
    terminated = {
        "exitCode": exit_code,
        "reason": reason or ("Completed" if not exit_code else "Error"),
    }
    phase = "Succeeded" if exit_code == 0 else "Failed"
    return {"phase": phase, "containerStatuses": [status("run", {"terminated": terminated})]}


def waiting(reason: str, message: str, container: str = "run") -> dict[str, Any]:
    state = {"waiting": {"reason": reason, "message": message}}
    key = "containerStatuses" if container == "run" else "initContainerStatuses"
    return {"phase": "Pending", key: [status(container, state)]}


def run_exited(exit_code: int) -> dict[str, Any]:
    """The run's container has exited; the pod still runs while its sidecar collects."""
    terminated = {"exitCode": exit_code, "reason": "Completed" if not exit_code else "Error"}
    return {"phase": "Running", "containerStatuses": [status("run", {"terminated": terminated})]}


def unschedulable(message: str) -> Script:
    """No node can take the pod: the scheduler says why, and it stays Pending."""
    condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
    state = {"phase": "Pending", "conditions": [{**condition, "message": message}]}
    return Script([state], hold=True)


def succeeds(output: bytes = b"", program: Callable[[Path], None] | None = None) -> Script:
    return Script([running(), finished(0)], {"run": output}, program)


def collects(program: Callable[[Path], None], collecting: float = 0.3) -> Script:
    """Succeeds, and its collect sidecar takes `collecting` seconds to write."""
    states = [running(), run_exited(0), finished(0)]
    return Script(states, {"run": b""}, program, pauses={1: collecting})


def fails(exit_code: int, output: bytes = b"", reason: str | None = None) -> Script:
    return Script([running(), finished(exit_code, reason)], {"run": output})


def cannot_pull(reason: str, message: str, container: str = "run") -> Script:
    states = [waiting("ErrImagePull", message, container), waiting(reason, message, container)]
    return Script(states, hold=True)


def pull_fails_then_succeeds(message: str, output: bytes = b"") -> Script:
    """A pull refused for a while (a rate limit), then done."""
    states = [
        waiting("ErrImagePull", message),
        waiting("ImagePullBackOff", message),
        waiting("ErrImagePull", message),
        running(),
        finished(0),
    ]
    return Script(states, {"run": output})


def runs_until_deleted(output: bytes = b"", start_delay: float = 0.0) -> Script:
    """A run that never ends by itself: deleted, or killed at its deadline."""
    return Script([running()], {"run": output}, hold=True, start_delay=start_delay)
