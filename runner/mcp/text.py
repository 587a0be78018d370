"""What MCP clients read: the server's instructions and every tool's description, each with an
example call. Models choose tools by these words, so they say when to use a tool, not how it
works."""

INSTRUCTIONS = """Runs one-off containers: call run_container with an image and a command to execute
code in isolation and get its exit code and output back. For long runs, start_run returns at
once; get_run_logs, get_run and cancel_run follow it. Files go in and out as base64 in
`volumes`; create_volume keeps files between runs; docker_health, list_containers and
list_images inspect the engine."""

RUN_CONTAINER = """Run a command in a fresh container and return its exit code, stdout and stderr.

Use it to execute code or tools in isolation: the container gets the image, command,
environment and files you give, runs under time and memory limits, and is removed afterwards.
A non-zero exit code is a normal result (read stderr); an error result means the run could not
happen, and its message says which argument to fix.

Files: `volumes` maps an absolute container path (optionally ending in :ro) to
{"type": "file", "content": <base64>} or {"type": "directory", "content": <base64 tar.gz>};
add "response": true to get that path's content back after the run.

Example: {"image": "python:3.12-slim", "command": ["python", "-c", "print(2 + 2)"]}
"""

CREATE_VOLUME = """Create a named Docker volume, optionally filled from a base64 tar.gz.

Use it to keep files between runs: mount it in run_container with
{"type": "volume", "name": <name>}. A single top-level folder in the archive is stripped. Only
runs made with the same API token may mount it; `driver` and `driver_opts` must be on the
operator's lists (default: the local driver, no options).

Example: {"name": "project-cache"}
"""

DOCKER_HEALTH = """Check that the container engine is reachable; returns its version.

Use it when runs fail with "backend unavailable", or before a first run.

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


START_RUN = """Start a long run and return at once with its run_id; the run goes on without you.

Use it instead of run_container for builds, test suites or anything that may outlast a tool
call. Same arguments as run_container. Then call get_run_logs to read output as it comes,
get_run for the state and, once finished, the full result, and cancel_run to stop it.

Example: {"image": "python:3.12-slim", "command": ["python", "-m", "pytest"]}
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
