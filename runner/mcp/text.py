"""What MCP clients read: the server's instructions and every tool's description, each with an
example call. Models choose tools by these words, so they say when to use a tool, not how it
works."""

import json

from runner.engine_models import VolumeFiles
from runner.settings import Settings

INSTRUCTIONS = """Runs one-off containers: run_container runs a command and returns its exit
code, output and the files in `outputs` (images shown). It answers within {answer:g}s; a longer
run answers "still running" with a run_id: call wait_run until it finishes, cancel_run to stop
it. read_file reads a returned file by its uri. create_volume keeps files between runs."""

RUN_CONTAINER = """Run a command in a fresh container; get its exit code, output and files.

Answers within {answer:g}s; a run still going answers "still running" with its run_id: call
wait_run until finished. A non-zero exit is a normal result; an error names the argument to fix.

Defaults: no network, killed after {timeout:g}s (`timeout_seconds`, at most {max_timeout:g}),
{memory} memory, {cpus:g} CPU. `outputs`: directories handed back (text and images shown, each
file linked for read_file).

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


WAIT_RUN = """Wait up to wait_seconds (default and at most {answer:g}) for a run: its output
after the offsets; once finished, its result and files. Still running: call again.

Example: {{"run_id": "3f9c0a1b2c3d4e5f", "stdout_offset": 2048, "stderr_offset": 0}}
"""


def wait_run(settings: Settings) -> str:
    return WAIT_RUN.format(answer=settings.mcp_answer_seconds)


READ_FILE = """Read a file a run handed back, by its uri (text, image or base64), until the run's
result expires.

Example: {"uri": "run://3f9c0a1b2c3d4e5f/files/out/report.csv"}
"""

CREATE_VOLUME = """A workspace that keeps files between runs. Loop: mount it in run_container
(volumes {"/work": {"type": "volume", "name": <name>}}), install dependencies into it once,
run; read_volume, write_volume_file; run again. It expires: read_volume shows when.

Example: {"name": "project"}
"""

LIST_VOLUMES = """List the volumes you created.

Example: {}
"""

REMOVE_VOLUME = """Remove a volume you created and its files; refused while a run uses it.

Example: {"name": "project-cache"}
"""

READ_VOLUME = """No run needed. Without `name`: your volumes. With it: a file's text (or base64),
or a directory's files and the bytes used of the volume's bound.

Example: {"name": "project", "path": "src/app.py"}
"""

WRITE_VOLUME_FILE = """Write (or replace) a file in a volume; no run needed.

Example: {"name": "project", "path": "src/app.py", "content": "print('v2')"}
"""


def listing(found: VolumeFiles) -> str:
    """A volume's entries as lines a model reads: path (directories end in /), bytes."""
    lines = [
        f"{entry.path}{'/' if entry.type == 'directory' else ''}  {entry.size}"
        for entry in found.entries
    ]
    return "\n".join([f"{found.total_bytes} of {found.max_bytes} bytes used", *lines])


ENGINE_INFO = """Look at the engine: `what` health (its version; try it on "backend
unavailable"), containers (your runs; `all`: stopped too; `managed_only: false`: all, for
operators) or images (those you may run).

Example: {"what": "images", "reference": "python"}
"""

PULL_IMAGE = """Pull an image ahead of runs, with progress; `auth_config` serves this pull only.
Status "pulling": it goes on; call again to wait.

Example: {"image": "python:3.12-slim"}
"""

CANCEL_RUN = """Stop a run (its container is removed), or drop a finished one's result and files.

Example: {"run_id": "3f9c0a1b2c3d4e5f"}
"""

FIELDS: dict[str, dict[str, str | None]] = {
    "run_container": {
        "command": "Exec form: a list, or a string split like a shell.",
        "script": "Shell text for /bin/sh -c (instead of `command`).",
        "env_vars": "Values: text, ints, bools.",
        "pull_policy": "missing (default), always or never.",
        "volumes": 'Path[:ro] to {"type": ...}: file (`content` base64), directory (`content` '
        "base64 tar.gz), volume (`name`), host (`host_path`); `response`: hand it back.",
        "timeout_seconds": "Seconds.",
        "network": '"none" or a network name.',
        "stdin": "Input text.",
        "files": 'Path: its text, or {"content": ..., "mode": "0755"}.',
        "outputs": "Directories handed back.",
        "entrypoint": "Replaces the image's.",
        "user": "name, uid or uid:gid.",
        "runtime": "e.g. runsc, if the operator allows it.",
        "memory": "e.g. 256m.",
        "cpus": "e.g. 0.5.",
    },
    "create_volume": {
        "name": None,
        "driver_opts": None,
        "content": "Base64 tar.gz to fill it.",
        "labels": None,
        "reuse_existing": "Fill an existing one.",
        "ttl_seconds": "Life from now.",
        "driver": None,
    },
    "engine_info": {"what": None, "reference": "e.g. python"},
    "pull_image": {"auth_config": "Registry credentials."},
    "remove_volume": {"name": None},
    "read_volume": {"path": "Relative to the volume's root."},
    "write_volume_file": {},
}
"""Argument descriptions shorter than the shared models' (REST's), by tool; None: none (the
name and the tool's description say it). Every byte of tools/list is read on every turn."""
