"""What MCP clients read: the server's instructions and every tool's description, each with an
example call. Models choose tools by these words, so they say when to use a tool, not how it
works."""

import json

from runner.settings import Settings

INSTRUCTIONS = """Runs one-off containers: run_container runs a command and returns its exit
code, output and the files in `outputs` (images shown). It answers within {answer:g}s; a longer
run answers "still running" with a run_id: call wait_run until it finishes, cancel_run to stop
it. read_file reads a returned file by its uri. create_volume keeps files between runs."""

RUN_CONTAINER = """Run a command in a fresh container; get its exit code, output and files.

Answers within {answer:g}s; a run still going then answers "still running" (not an error) with
its run_id: call wait_run until finished. A non-zero exit code is a normal result; an error
result means the run could not happen and names the argument to fix.

`script` is shell text; `command` is exec form. Defaults: no network, killed after
{timeout:g}s (`timeout_seconds`, at most {max_timeout:g}), {memory} memory, {cpus:g} CPU.

`files` maps an absolute path to its text. `outputs` are directories handed back after the
run: text files and images shown, every file linked for read_file.

Example: {example}
"""
RUN_EXAMPLE = {
    "image": "python:3.12-slim",
    "script": "cd /app && python plot.py",
    "files": {"/app/plot.py": "..."},
    "outputs": ["/out"],
}


def instructions(settings: Settings) -> str:
    return INSTRUCTIONS.format(answer=settings.mcp_answer_seconds)


def run_container(settings: Settings) -> str:
    """RUN_CONTAINER with the operator's defaults, which surprise models when unsaid."""
    return RUN_CONTAINER.format(
        answer=settings.mcp_answer_seconds,
        example=json.dumps(RUN_EXAMPLE),
        timeout=settings.default_timeout_seconds,
        max_timeout=settings.max_timeout_seconds,
        memory=settings.default_memory,
        cpus=settings.default_cpus,
    )


WAIT_RUN = """Wait up to wait_seconds (default and at most {answer:g}) for a run; get its
output after the offsets, and once finished its result and files. Still running: call again
with the new offsets.

Example: {{"run_id": "3f9c0a1b2c3d4e5f", "stdout_offset": 2048, "stderr_offset": 0}}
"""


def wait_run(settings: Settings) -> str:
    return WAIT_RUN.format(answer=settings.mcp_answer_seconds)


READ_FILE = """Read a file a run handed back, by the uri its answer gave: text as text, an image
as an image, other files as base64. Readable until the run's result expires.

Example: {"uri": "run://3f9c0a1b2c3d4e5f/files/out/report.csv"}
"""

CREATE_VOLUME = """Create a named Docker volume, optionally filled from a base64 tar.gz.

Use it to keep files between runs: mount it in run_container with
{"type": "volume", "name": <name>}. A single top-level folder in the archive is stripped. Only
runs made with the same API token may mount it; `driver` and `driver_opts` must be on the
operator's lists (default: the local driver, no options).

Example: {"name": "project-cache"}
"""

LIST_VOLUMES = """List the named volumes you created with create_volume (no other volume is shown).

Example: {}
"""

REMOVE_VOLUME = """Remove a volume you created, and its data. Refused while a run uses it.

Example: {"name": "project-cache"}
"""

RUNNER_HEALTH = """Check that the backend (Docker or Kubernetes) is reachable; returns its version.

Use it when runs fail with "backend unavailable", or before a first run.

Example: {}
"""

DOCKER_HEALTH = """The old name of runner_health.

Example: {}
"""

LIST_CONTAINERS = """List containers on the engine: by default your own runs in progress
(`managed_only: false`, every container on the engine, only without API tokens).

Example: {"all": true, "status": "running"}
"""

LIST_IMAGES = """List images present on the engine (so pull_policy "never" or "missing" can use
them), optionally filtered by reference.

Example: {"reference": "python"}
"""

PULL_IMAGE = """Pull an image onto the engine ahead of runs, with download progress. Only images
the operator allows; `auth_config` (private registries) is used for this pull only.

Example: {"image": "python:3.12-slim"}
"""

CANCEL_RUN = """Cancel a run: its container is killed and removed, its state becomes cancelled.

Example: {"run_id": "3f9c0a1b2c3d4e5f"}
"""
