"""What MCP clients read: the server's instructions and every tool's description, each with an
example call. Models choose tools by these words, so they say when to use a tool, not how it
works."""

from runner.settings import Settings

INSTRUCTIONS = """Runs one-off containers: call run_container with an image and a command to execute
code in isolation and get its exit code and output back. For long runs, start_run returns at
once; get_run_logs, get_run and cancel_run follow it. Files go in as text in `files` or as
base64 in `volumes`; create_volume keeps files between runs (list_volumes, remove_volume);
runner_health, list_containers and list_images inspect the engine; pull_image fetches ahead."""

RUN_CONTAINER = """Run a command in a fresh container and return its exit code, stdout and stderr.

A non-zero exit code is a normal result (read stderr); an error result means the run could not
happen and says which argument to fix. `script` is shell text (pipes, &&, $VARS); `command` is
exec form.

Defaults: no network (`network`), killed after {timeout:g}s (`timeout_seconds`, at most
{max_timeout:g}), {memory} of memory (`memory`), {cpus:g} CPU (`cpus`); images are pulled only
when missing.

Files: `files` maps an absolute path to its text; `volumes` takes base64 files, tar.gz
directories and named volumes, and "response": true hands a path back after the run (small
text files as text too).

Example: {{"image": "python:3.12-slim", "script": "python -c 'print(2 + 2)'"}}
"""


def run_container(settings: Settings) -> str:
    """RUN_CONTAINER with the operator's defaults, which surprise models when unsaid."""
    return RUN_CONTAINER.format(
        timeout=settings.default_timeout_seconds,
        max_timeout=settings.max_timeout_seconds,
        memory=settings.default_memory,
        cpus=settings.default_cpus,
    )


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
(`managed_only: false`: every container, for operators only).

Example: {"all": true, "status": "running"}
"""

LIST_IMAGES = """List the images on the engine you may run (for pull_policy "never" or
"missing"), optionally filtered by reference.

Example: {"reference": "python"}
"""

PULL_IMAGE = """Pull an image onto the engine ahead of runs, with download progress. Only images
the operator allows; `auth_config` (private registries) is used for this pull only.

Example: {"image": "python:3.12-slim"}
"""

START_RUN = """Start a long run (a build, a test suite) and return its run_id at once.

Same arguments as run_container (described there). Follow it with get_run_logs (output as
it comes), get_run (state; the result once finished) and cancel_run.

Example: {"image": "python:3.12-slim", "script": "python -m pytest"}
"""

GET_RUN = """State of a run started with start_run (queued, pulling, running, succeeded, failed,
timeout, cancelled) and, once finished, the same result run_container returns.

Example: {"run_id": "3f9c0a1b2c3d4e5f"}
"""

GET_RUN_LOGS = """Output of a run so far. Pass back the offsets of the previous answer to get only
newer output; `finished` says no more will come.

Example: {"run_id": "3f9c0a1b2c3d4e5f", "stdout_offset": 0, "stderr_offset": 0}
"""

CANCEL_RUN = """Cancel a run: its container is killed and removed, its state becomes cancelled.

Example: {"run_id": "3f9c0a1b2c3d4e5f"}
"""
