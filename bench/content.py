"""Content scenarios of issue 15: files over the binary path (multipart in, multipart/mixed
out) against the bare archive calls, the server's memory for a large upload and for the JSON
path, and gVisor (runsc) against runc when the engine has it."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import docker
import httpx

from bench.baseline import directory_tar, sdk_run
from bench.harness import Runner, interleaved
from bench.scenarios import Result, _inner, _summary, post_run, run_body
from tests.helpers import ZeroTar

MiB = 2**20
MIXED = "multipart/mixed"


def post_parts(
    http: httpx.Client, runner: Runner, body: dict[str, Any], parts: dict[str, Any]
) -> bytes:
    """POST /run as multipart, asking for returned paths as raw parts; the whole answer."""
    files: list[tuple[str, Any]] = [("request", (None, json.dumps(body), "application/json"))]
    files += [(key, ("content", data)) for key, data in parts.items()]
    response = http.post(f"{runner.rest}/run", files=files, headers={"Accept": MIXED}, timeout=600)
    response.raise_for_status()
    return response.content


def binary_files(runner: Runner, api: docker.APIClient, mebibytes: int, rounds: int) -> Result:
    """A directory in and returned over the binary path, against put_archive + get_archive."""
    tar = directory_tar(mebibytes * MiB)
    inner = _inner(tar)
    body = run_body(["true"], volumes={"/data": {"type": "directory", "response": True}})
    with httpx.Client() as http:
        samples = interleaved(
            {
                "runner": lambda: post_parts(http, runner, body, {"/data": inner}),
                "sdk": lambda: sdk_run(api, ["true"], data=tar),
            },
            rounds,
            warmup=1,
        )
    return {**_summary(samples, "runner", ["sdk"]), "mib": mebibytes}


def json_files(runner: Runner, api: docker.APIClient, mebibytes: int, rounds: int) -> Result:
    """The same round trip over JSON (base64 of a tar.gz)."""
    tar = directory_tar(mebibytes * MiB)
    payload = json.dumps(_json_request(tar, response=True)).encode()
    with httpx.Client() as http:
        samples = interleaved(
            {
                "runner": lambda: post_run(http, runner, payload),
                "sdk": lambda: sdk_run(api, ["true"], data=tar),
            },
            rounds,
            warmup=1,
        )
    return {**_summary(samples, "runner", ["sdk"]), "mib": mebibytes}


def json_memory(runner: Runner, mebibytes: int) -> Result:
    """The server's peak RSS growth for a JSON request with `mebibytes` of content in, against
    the request's size. `runner` must be fresh: memory a process freed earlier stays resident
    and is used again without growing its RSS, which would hide the request's cost."""
    small = json.dumps(_json_request(directory_tar(MiB), response=False)).encode()
    request = json.dumps(_json_request(directory_tar(mebibytes * MiB), response=False)).encode()
    with httpx.Client() as http:
        post_run(http, runner, small)  # the same code path, loaded and warm
        before = runner.rss()
        runner.reset_peak()
        post_run(http, runner, request)
        growth = runner.peak() - before
    return {
        "request_mib": round(len(request) / MiB, 2),
        "peak_rss_growth_mib": round(growth / MiB, 2),
        "growth_per_request_size": round(growth / len(request), 2),
    }


def _json_request(tar: bytes, *, response: bool) -> dict[str, object]:
    content = base64.b64encode(gzip.compress(_inner(tar), compresslevel=1)).decode()
    volumes = {"/data": {"type": "directory", "content": content, "response": response}}
    return run_body(["true"], volumes=volumes)


def big_upload(runner: Runner, mebibytes: int) -> Result:
    """The server's peak RSS growth while `mebibytes` stream in over the binary path (`runner`
    fresh, as for json_memory)."""
    body = run_body(["true"], volumes={"/data": {"type": "directory"}})
    with httpx.Client() as http:
        post_parts(http, runner, body, {"/data": ZeroTar(MiB)})
        before = runner.rss()
        runner.reset_peak()
        post_parts(http, runner, body, {"/data": ZeroTar(mebibytes * MiB)})
        growth = runner.peak() - before
    return {"upload_mib": mebibytes, "peak_rss_growth_mib": round(growth / MiB, 2)}


def runsc_files(runner: Runner, api: docker.APIClient, mebibytes: int, rounds: int) -> Result:
    """The binary-path round trip under runsc against runc (`echo hi` is
    `scenarios.runsc_vs_runc`), when the engine has runsc."""
    if "runsc" not in (api.info().get("Runtimes") or {}):
        return {"runsc": "not available"}
    inner = _inner(directory_tar(mebibytes * MiB))
    volumes = {"/data": {"type": "directory", "response": True}}
    with httpx.Client() as http:

        def files(runtime: str) -> object:
            body = run_body(["true"], volumes=volumes, runtime=runtime)
            return post_parts(http, runner, body, {"/data": inner})

        samples = interleaved(
            {"runsc": lambda: files("runsc"), "runc": lambda: files("runc")}, rounds, warmup=1
        )
    return {**_summary(samples, "runsc", ["runc"]), "mib": mebibytes}
