"""Pulling an image for a run: per its policy, with its credentials (never echoed), stopping
when the run is cancelled, and the engine's progress handed on as events (layer progress as
"pull", other statuses as "phase")."""

from __future__ import annotations

import json
from typing import Any

import docker

from backends.docker.errors import engine_errors, pull_failure
from runner.errors import Cancelled, RunnerError
from runner.spec import EventSink, PullSpec, RunControl, RunSpec


def pulls_first(spec: RunSpec) -> bool:
    """Pull up front when the policy says always, or when credentials came (so they are
    checked: a cached private image is never handed to a caller without them)."""
    return spec.pull_policy == "always" or spec.auth is not None


def pull(api: docker.APIClient, spec: RunSpec | PullSpec, control: RunControl) -> None:
    """Pull the image, its progress as `control`'s events, until `control` is cancelled."""
    image, auth = spec.image, spec.auth
    auth_config = None
    if auth is not None:
        auth_config = {key: value for key, value in vars(auth).items() if value is not None}

    def translate(message: str) -> RunnerError:
        if auth is not None:
            message = message.replace(auth.password, "***")
        absent = isinstance(spec, RunSpec) and not pulls_first(spec)  # create found none
        return pull_failure(message, image, with_auth=auth is not None, absent=absent)

    with engine_errors(f"pulling {image!r}", translate):
        events = api.pull(image, stream=True, decode=True, auth_config=auth_config)
        for event in events:
            if control.cancelled.is_set():
                events.close()
                raise Cancelled("cancelled while the image was pulled")
            if "error" in event:
                raise translate(str(event["error"]))
            _forward(event, control.emit)


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
