"""The shell a warm (pool) container waits in, and the one line that turns it into a run.

A pool container runs `WAITER` as its PID 1, its input open and attached: the shell reads one
line and evaluates it. The line (`command_line`) does what the engine does at create and start
on the cold path, in the same order, then `exec`s the run's command, which so becomes PID 1
with the shell's input left for it (sh reads a pipe byte by byte: nothing past the line is
consumed). Before `exec` it prints a marker no command can forge (a nonce the command never
sees: it was in the line the shell consumed) and one status byte, so the runner knows whether
the command started, or why it could not (the cold path's start errors).

A root image's small content (`content_steps`: files and empty directories, up to
`INLINE_BYTES`) is written by the line itself, as the engine unpacks the cold path's archive:
the engine's archive call into a running container costs ~45 ms, the line a few.

Pure functions of the request and the image, for unit tests in the fast lane.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence

from runner.spec import MountSpec

WAITER = 'IFS= read -r __oneoff_line || exit 125; eval "$__oneoff_line"'
STARTED = b"+"
NO_PROGRAM = b"p"
NO_WORKDIR = b"w"
NO_CONTENT = b"c"
NO_LIMIT = b"l"
LIMIT_BLOCK = 512
"""`ulimit -f` counts 512-byte blocks (POSIX; bash as sh too)."""
INLINE_BYTES = 8 * 1024
"""Content up to this size goes in the line (sh reads it a byte at a time), more through the
engine."""
EPOCH = "197001010000.00"
"""The cold path's archive members carry no time: the engine unpacks them at the epoch."""
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


def pool_image(image: str) -> str:
    """An image reference with its implicit `:latest`, as runs and pool entries are matched
    (`busybox` is `busybox:latest`)."""
    name = image.partition("@")[0]
    tagged = name.rfind(":") > name.rfind("/")
    return image if tagged or "@" in image else f"{image}:latest"


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
    content: Sequence[str] = (),
    file_size: int | None = None,
    started_line: bool = False,
) -> bytes:
    """The line for the waiter: the run's `content` written (`content_steps`), its largest
    file lowered to `file_size` bytes (a multiple of `LIMIT_BLOCK`, the engine's `fsize` ulimit
    on the cold path; the engine's unpacking is not held to it, nor is the content), `cd` to the
    working dir (made first if absent and the shell
    runs as root, as the engine makes it: root's, 0755), the environment made the cold run's
    (what the shell added unset, the request's exported), the program looked up with the run's
    PATH, the marker and status printed, then `exec`. `cold_env`: the environment the cold run
    would have (the image's merged with the request's). `started_line`: the started status
    ends a line of its own (a pod's log is written a line at a time, so the marker stays apart
    from the command's output)."""
    steps = []
    if content:
        steps.append(f"{{ {' && '.join(content)}; }} || {_fail(marker, NO_CONTENT)}")
    if file_size is not None:
        steps.append(f"ulimit -f {file_size // LIMIT_BLOCK} || {_fail(marker, NO_LIMIT)}")
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
    steps.append(_status(marker, STARTED, "\\n" if started_line else ""))
    steps.append("exec " + " ".join(quote(arg) for arg in argv))  # dash's exec takes no --
    line = "; ".join(steps)
    if "\n" in line:
        line = f"{NEWLINE}=$(printf '\\nx'); {NEWLINE}=${{{NEWLINE}%x}}; {line}"
    return line.replace("\n", f"'\"${NEWLINE}\"'").encode() + b"\n"


def content_steps(mounts: Sequence[MountSpec]) -> list[str] | None:
    """Shell steps that put a root run's content in place as the engine unpacks the cold
    path's archive: nothing may be at a mount's path yet, missing parents made (root's, 0755),
    each file and empty directory root's with its mode and the epoch's time. None when the
    content is not all such, or larger than `INLINE_BYTES`: it then goes through the engine."""
    simple = all(m.kind == "file" or (m.kind == "directory" and not m.content) for m in mounts)
    if not simple or sum(len(m.content or b"") for m in mounts) > INLINE_BYTES:
        return None
    if not mounts:
        return []
    paths = [quote(mount.path) for mount in mounts]
    steps = [f"[ ! -e {path} ] && [ ! -h {path} ]" for path in paths]
    parents = sorted({posixpath.dirname(mount.path) for mount in mounts} - {"/"})
    if parents:
        steps.append(f"mkdir -p -- {' '.join(quote(parent) for parent in parents)}")
    modes: dict[int, list[str]] = {}
    for mount, path in zip(mounts, paths, strict=True):
        if mount.kind == "directory":
            steps.append(f"mkdir -- {path}")
            modes.setdefault(0o755, []).append(path)
        else:
            steps.append(f"printf '{_printf_format(mount.content or b'')}' > {path}")
            modes.setdefault(mount.mode, []).append(path)
    steps += [f"chmod {mode:o} -- {' '.join(named)}" for mode, named in modes.items()]
    steps.append(f"TZ=UTC0 touch -c -t {EPOCH} -- {' '.join(paths)}")
    return steps


def _printf_format(data: bytes) -> str:
    """`data` as a printf format that prints exactly it: printable ASCII as itself, every
    other byte (and `%`, `\\`, `'`, a leading `-`) as an octal escape."""
    plain = [32 <= byte < 127 and byte not in b"%\\'" for byte in data]
    if data[:1] == b"-":
        plain[0] = False  # printf would read it as an option
    return "".join(chr(b) if keep else f"\\{b:03o}" for b, keep in zip(data, plain, strict=True))


def _fail(marker: str, status: bytes) -> str:
    return f"{{ {_status(marker, status)}; exit 127; }}"


def _status(marker: str, status: bytes, end: str = "") -> str:
    return f"printf '%s{end}' {quote(marker + status.decode())}"


def quote(text: str) -> str:
    """`text` as one sh word: single-quoted (newlines are replaced by the caller)."""
    return "'" + text.replace("'", "'\\''") + "'"
