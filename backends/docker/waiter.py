"""The shell a warm (pool) container waits in, and the one line that turns it into a run.

A pool container runs `WAITER` as its PID 1, its input open and attached: the shell reads one
line and evaluates it. The line (`command_line`) does what the engine does at create and start
on the cold path, in the same order, then `exec`s the run's command, which so becomes PID 1
with the shell's input left for it (sh reads a pipe byte by byte: nothing past the line is
consumed). Before `exec` it prints a marker no command can forge (a nonce the command never
sees: it was in the line the shell consumed) and one status byte, so the runner knows whether
the command started, or why it could not (the cold path's start errors).

Pure functions of the request and the image, for unit tests in the fast lane.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

WAITER = 'IFS= read -r __oneoff_line || exit 125; eval "$__oneoff_line"'
STARTED = b"+"
NO_PROGRAM = b"p"
NO_WORKDIR = b"w"
SHELL_ADDS = ("PWD", "OLDPWD", "SHLVL")
"""What sh exports on its own (busybox ash: PWD, SHLVL; dash: PWD); the cold path has none."""
NEWLINE = "__oneoff_nl"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def engine_argv(
    image_entrypoint: Sequence[str] | None,
    image_cmd: Sequence[str] | None,
    entrypoint: Sequence[str] | None,
    command: Sequence[str] | None,
) -> list[str]:
    """The argv the engine runs for a request's entrypoint/command over the image's, as its
    create merges them: a non-empty entrypoint replaces the image's and drops its CMD; an
    empty or absent one keeps the image's CMD when no command is given, and the image's
    entrypoint only when absent (`[]` clears it)."""
    if entrypoint:
        return [*entrypoint, *(command or [])]
    argv = list(command or image_cmd or [])
    head = list(image_entrypoint or []) if entrypoint is None else []
    return [*head, *argv]


def fits(argv: Sequence[str], env: Mapping[str, str], working_dir: str | None) -> bool:
    """Whether the shell can set this up exactly: a program to run (not named like an option:
    `exec` would read it as one), environment names it can export, and no NUL anywhere."""
    texts = [*argv, *env.values(), working_dir or ""]
    names = all(NAME.fullmatch(name) for name in env)
    return bool(argv) and not argv[0].startswith("-") and names and "\0" not in "".join(texts)


def command_line(
    argv: Sequence[str],
    env: Mapping[str, str],
    working_dir: str | None,
    cold_env: Mapping[str, str],
    marker: str,
    *,
    as_root: bool,
) -> bytes:
    """The line for the waiter: `cd` to the working dir (made first if absent and the shell
    runs as root, as the engine makes it: root's, 0755), the environment made the cold run's
    (what the shell added unset, the request's exported), the program looked up with the run's
    PATH, the marker and status printed, then `exec`. `cold_env`: the environment the cold run
    would have (the image's merged with the request's)."""
    steps = []
    if working_dir is not None:
        directory = quote(working_dir)
        make = f" || {{ mkdir -p -- {directory} && cd -- {directory}; }}" if as_root else ""
        steps.append(f"{{ cd -- {directory} 2>/dev/null{make}; }} || {_fail(marker, NO_WORKDIR)}")
    added = [name for name in SHELL_ADDS if name not in cold_env]
    if added:
        steps.append(f"unset {' '.join(added)}")
    steps += [f"export {name}={quote(value)}" for name, value in env.items()]
    steps += [f"export {name}={quote(cold_env[name])}" for name in SHELL_ADDS if name in cold_env]
    program = quote(argv[0])
    steps.append(f"command -v -- {program} >/dev/null || {_fail(marker, NO_PROGRAM)}")
    steps.append(_status(marker, STARTED))
    steps.append("exec " + " ".join(quote(arg) for arg in argv))  # dash's exec takes no --
    line = "; ".join(steps)
    if "\n" in line:
        line = f"{NEWLINE}=$(printf '\\nx'); {NEWLINE}=${{{NEWLINE}%x}}; {line}"
    return line.replace("\n", f"'\"${NEWLINE}\"'").encode() + b"\n"


def _fail(marker: str, status: bytes) -> str:
    return f"{{ {_status(marker, status)}; exit 127; }}"


def _status(marker: str, status: bytes) -> str:
    return f"printf %s {quote(marker + status.decode())}"


def quote(text: str) -> str:
    """`text` as one sh word: single-quoted (newlines are replaced by the caller)."""
    return "'" + text.replace("'", "'\\''") + "'"
