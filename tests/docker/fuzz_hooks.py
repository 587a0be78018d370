"""Schemathesis hooks for the fuzz test of the real runner (`test_openapi_fuzz.py`): loaded by
`schemathesis run` (SCHEMATHESIS_HOOKS), they keep generated requests off the internet and give
them what no JSON Schema can say, and change nothing a schema says a request got wrong:

- a well-formed `image` becomes the suite's image in its loopback registry (the only one the
  runner allows), so runs and pulls never reach for Docker Hub;
- a run pulls only if its image is `missing` (the test pulled it first): a pull per run, even
  of an image the engine has, would take most of the test's time;
- a well-formed `entrypoint` (or none) becomes `["true"]`, whose arguments the `command` is,
  and a `user` the image's nobody (65534): what programs and users an image has (and that the
  suite's has no CMD) no schema can know;
- well-formed base64 `content` of a directory volume or of POST /volume becomes a real tar.gz
  (a schema can say base64, not gzip);
- a multipart body is the form its documentation describes: the `request` part first, then one
  part for each file volume without inline `content`, and no part for anything else (what parts
  a request needs depends on its `request` part, which JSON Schema cannot relate).
"""

from __future__ import annotations

import base64
import os
import re
from typing import Any

import schemathesis

from runner.models import IMAGE_PATTERN, SPLITTABLE_PATTERN
from runner.rest.schemas import BASE64_PATTERN
from tests.helpers import tar_gz

IMAGE = os.environ["FUZZ_IMAGE"]
TAR_GZ = base64.b64encode(tar_gz({"data/hello.txt": b"hello\n"})).decode()
RUN_PATHS = ("/run", "/runs")
PULL_POLICIES = (None, "always", "missing", "never")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    body = case.body
    path = case.operation.path
    if not isinstance(body, dict):
        return
    if path == "/volume" and _base64(body.get("content")):
        body["content"] = TAR_GZ
    request = body.get("request")
    if isinstance(request, dict):
        case.body = {"request": request, **_parts(request)}
        body = request
    image = body.get("image")
    if isinstance(image, str) and 0 < len(image) <= 512 and re.match(IMAGE_PATTERN, image):
        body["image"] = IMAGE
        if path in RUN_PATHS and body.get("pull_policy") in PULL_POLICIES:
            body["pull_policy"] = "missing"
        if path in RUN_PATHS and _arguments(body.get("entrypoint")):
            body["entrypoint"] = ["true"]
        if path in RUN_PATHS and isinstance(body.get("user"), str):
            body["user"] = "65534"
    volumes = body.get("volumes")
    for spec in volumes.values() if isinstance(volumes, dict) else ():
        if isinstance(spec, dict) and spec.get("type") == "directory":
            if _base64(spec.get("content")):
                spec["content"] = TAR_GZ


def _parts(request: dict[str, Any]) -> dict[str, bytes]:
    volumes = request.get("volumes")
    return {
        key: b"content\n"
        for key, spec in (volumes.items() if isinstance(volumes, dict) else ())
        if isinstance(spec, dict) and spec.get("type") == "file" and spec.get("content") is None
    }


def _arguments(value: Any) -> bool:
    """Whether `value` is an entrypoint the schema allows."""
    if isinstance(value, str):
        return re.match(SPLITTABLE_PATTERN, value) is not None
    return value is None or isinstance(value, list) and all(isinstance(x, str) for x in value)


def _base64(value: Any) -> bool:
    return isinstance(value, str) and re.match(BASE64_PATTERN, value) is not None
