"""Pulling an image, with the caller's credentials (never echoed), stopping when the run is
cancelled, and the engine's progress handed on as events (layer progress as "pull", other
statuses as "phase"); and asking the registry whether credentials reach an image, without a
pull. Which of them a run needs is `images`' to say."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import docker

from backends.docker.errors import engine_errors, pull_failure
from runner.errors import Cancelled, RunnerError
from runner.spec import EventSink, PullSpec, RunControl, RunSpec


def pull(api: docker.APIClient, spec: RunSpec | PullSpec, control: RunControl) -> None:
    """Pull the image, its progress as `control`'s events, until `control` is cancelled."""
    image, translate = spec.image, _translation(spec)
    with engine_errors(f"pulling {image!r}", translate):
        events = api.pull(image, stream=True, decode=True, auth_config=_auth_config(spec))
        for event in events:
            if control.cancelled.is_set():
                events.close()
                raise Cancelled("cancelled while the image was pulled")
            if "error" in event:
                raise translate(str(event["error"]))
            _forward(event, control.emit)


def check_access(api: docker.APIClient, spec: RunSpec | PullSpec) -> None:
    """Ask the registry whether the credentials reach the image, without pulling it (the
    engine's distribution endpoint: the manifest's descriptor); refused as a pull would be."""
    with engine_errors(f"checking access to {spec.image!r}", _translation(spec)):
        api.inspect_distribution(spec.image, auth_config=_auth_config(spec))


def _auth_config(spec: RunSpec | PullSpec) -> dict[str, str] | None:
    if spec.auth is None:
        return None
    return {key: value for key, value in vars(spec.auth).items() if value is not None}


def _translation(spec: RunSpec | PullSpec) -> Callable[[str], RunnerError]:
    """The registry's refusal as our error, the password masked before anything reads it."""
    auth = spec.auth
    absent = isinstance(spec, RunSpec) and spec.pull_policy == "missing"  # create found none

    def translate(message: str) -> RunnerError:
        if auth is not None:
            message = message.replace(auth.password, "***")
        return pull_failure(message, spec.image, with_auth=auth is not None, absent=absent)

    return translate


def _forward(event: dict[str, Any], emit: EventSink) -> None:
    if "status" not in event:
        return
    detail = event.get("progressDetail") or {}
    if detail.get("total"):
        progress = {
            "id": event.get("id", ""),
            "status": event["status"],
            "current": detail.get("current", 0),
            "total": detail["total"],
        }
        emit("pull", json.dumps(progress))
    elif not detail:
        emit("phase", f"pull: {event['status']} {event.get('id', '')}".strip())
