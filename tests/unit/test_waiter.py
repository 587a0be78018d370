"""The warm container's waiter and its command line (`backends.docker.waiter`), run by the
shells images use as /bin/sh (dash, busybox ash, bash), on this machine: whatever a request
holds, the line runs exactly its argv with exactly its environment, and injects nothing."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from backends.waiter import (
    INLINE_BYTES,
    NO_CONTENT,
    NO_PROGRAM,
    NO_WORKDIR,
    STARTED,
    WAITER,
    command_line,
    content_steps,
    engine_argv,
    fits,
)
from runner.settings import Settings, WarmEntry
from runner.spec import MountSpec

SHELLS = [
    pytest.param(["dash"], id="dash"),
    pytest.param(["busybox", "sh"], id="busybox-ash"),
    pytest.param(["bash", "--posix"], id="bash"),
]
EXEC_ADDS = {"dash": set(), "busybox": set(), "bash": {"_", "SHLVL"}}
"""What a shell puts in the environment of the program it `exec`s whatever was unset: bash
(an image whose /bin/sh is bash) sets `_` and SHLVL; the documented difference."""
MARKER = "0123456789abcdef"
NASTY = 'it\'s $(touch /tmp/injected) `id` \\ "q" ; exit 9\nsecond line\t* ~'
PRINT_ARGS = "import os, sys; print(repr((sys.argv[1:], dict(os.environ), os.getcwd())))"


def _run(shell: list[str], line: bytes, stdin: bytes = b"") -> tuple[int, bytes]:
    """The waiter in `shell`, with a clean environment, given the line and then `stdin`."""
    if shutil.which(shell[0]) is None:
        pytest.fail(f"{shell[0]} is not installed: the fast lane needs dash, busybox and bash")
    done = subprocess.run(
        [*shell, "-c", f"umask 022; {WAITER}"],  # the runtime's umask
        input=line + stdin,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/root"},
        cwd="/",
        timeout=30,
        check=False,
    )
    return done.returncode, done.stdout


@pytest.mark.parametrize("shell", SHELLS)
def test_the_command_gets_its_argv_environment_and_working_dir_exactly(shell, tmp_path):
    python = shutil.which("python3") or "python3"
    argv = [python, "-c", PRINT_ARGS, NASTY, "", "-n", "'"]
    env = {"NASTY": NASTY, "EMPTY": "", "PATH": "/usr/bin:/bin", "PYTHONCOERCECLOCALE": "0"}
    cold_env = {"HOME": "/root", **env}
    line = command_line(argv, env, str(tmp_path), cold_env, MARKER, as_root=False)
    code, out = _run(shell, line)
    assert code == 0
    assert out.startswith(MARKER.encode() + STARTED)
    seen_argv, seen_env, seen_cwd = eval(out[len(MARKER) + 1 :])
    assert seen_argv == argv[3:]
    assert {k: v for k, v in seen_env.items() if k not in EXEC_ADDS[shell[0]]} == cold_env
    assert seen_cwd == str(tmp_path)
    assert not (tmp_path / "injected").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_what_follows_the_line_is_the_commands_input_then_end_of_file(shell):
    line = command_line(["cat"], {}, None, {}, MARKER, as_root=False)
    code, out = _run(shell, line, b"first\nsecond\0third")
    assert (code, out) == (0, MARKER.encode() + STARTED + b"first\nsecond\0third")


@pytest.mark.parametrize("shell", SHELLS)
def test_exit_codes_are_the_commands(shell):
    line = command_line(["sh", "-c", "exit 3"], {}, None, {}, MARKER, as_root=False)
    assert _run(shell, line)[0] == 3


@pytest.mark.parametrize("shell", SHELLS)
def test_a_missing_program_or_working_dir_is_told_before_exec(shell, tmp_path):
    missing = command_line(["no-such-program"], {}, None, {}, MARKER, as_root=False)
    assert _run(shell, missing) == (127, MARKER.encode() + NO_PROGRAM)
    a_file = tmp_path / "file"
    a_file.write_text("")
    bad_dir = command_line(["true"], {}, str(a_file), {}, MARKER, as_root=True)
    assert _run(shell, bad_dir) == (127, MARKER.encode() + NO_WORKDIR)


@pytest.mark.parametrize("shell", SHELLS)
def test_a_missing_working_dir_is_made_only_as_root(shell, tmp_path):
    made = tmp_path / "a" / "b"
    as_user = command_line(["pwd"], {}, str(made), {}, MARKER, as_root=False)
    assert _run(shell, as_user) == (127, MARKER.encode() + NO_WORKDIR)
    as_root = command_line(["pwd"], {}, str(made), {}, MARKER, as_root=True)
    assert _run(shell, as_root) == (0, MARKER.encode() + STARTED + f"{made}\n".encode())


def _file(path: object, content: bytes, mode: int = 0o644) -> MountSpec:
    return MountSpec(str(path), str(path), False, "file", content, mode)


@pytest.mark.parametrize("shell", SHELLS)
def test_small_content_is_written_as_the_engine_unpacks_it(shell, tmp_path):
    """Every byte value, a leading `-`, printf's and sh's specials; modes; missing parents;
    an empty directory; the epoch's time on what the archive would hold, not on parents."""
    every = bytes(range(256)) + b"%s%%\\n'\"$(id)`id`\n"
    mounts = [
        _file(tmp_path / "a" / "b" / "every.bin", every, 0o600),
        _file(tmp_path / "a" / "dash.txt", b"-n not an option", 0o4755),
        _file(tmp_path / "empty", b""),
        MountSpec("d", str(tmp_path / "c" / "dir"), False, "directory"),
    ]
    steps = content_steps(mounts)
    assert steps is not None
    line = command_line(["true"], {}, None, {}, MARKER, as_root=True, content=steps)
    assert _run(shell, line) == (0, MARKER.encode() + STARTED)
    assert (tmp_path / "a" / "b" / "every.bin").read_bytes() == every
    assert (tmp_path / "a" / "dash.txt").read_bytes() == b"-n not an option"
    assert (tmp_path / "empty").read_bytes() == b""
    modes = {
        path: stat.S_IMODE(os.stat(tmp_path / path).st_mode)
        for path in ("a/b/every.bin", "a/dash.txt", "empty", "c/dir", "a", "a/b", "c")
    }
    assert modes == {
        "a/b/every.bin": 0o600,
        "a/dash.txt": 0o4755,
        "empty": 0o644,
        "c/dir": 0o755,
        "a": 0o755,
        "a/b": 0o755,
        "c": 0o755,
    }
    times = {path: os.stat(tmp_path / path).st_mtime for path in ("a/dash.txt", "c/dir", "a")}
    assert times["a/dash.txt"] == times["c/dir"] == 0
    assert times["a"] > 0


@pytest.mark.parametrize("shell", SHELLS)
def test_content_where_something_is_already_is_refused_before_anything_is_written(shell, tmp_path):
    (tmp_path / "there").symlink_to(tmp_path / "nowhere")
    mounts = [_file(tmp_path / "new.txt", b"new"), _file(tmp_path / "there", b"x")]
    line = command_line(
        ["true"], {}, None, {}, MARKER, as_root=True, content=content_steps(mounts) or ()
    )
    assert _run(shell, line) == (127, MARKER.encode() + NO_CONTENT)
    assert not (tmp_path / "new.txt").exists()


@pytest.mark.parametrize(
    "mounts",
    [
        [_file("/big", b"x" * (INLINE_BYTES + 1))],
        [_file("/a", b"x" * (INLINE_BYTES // 2)), _file("/b", b"x" * (INLINE_BYTES // 2 + 1))],
        [MountSpec("d", "/d", False, "directory", b"a tar.gz")],
        [MountSpec("v", "/v", False, "volume", name="cache")],
    ],
)
def test_large_or_archived_content_goes_through_the_engine(mounts):
    assert content_steps(mounts) is None


def test_end_of_file_before_a_line_ends_the_waiter():
    assert _run(["dash"], b"")[0] == 125


@pytest.mark.parametrize(
    ("image_entrypoint", "image_cmd", "entrypoint", "command", "argv"),
    [
        (None, ["sh"], None, None, ["sh"]),
        (None, ["sh"], None, ["echo", "hi"], ["echo", "hi"]),
        (["/init"], ["serve"], None, None, ["/init", "serve"]),
        (["/init"], ["serve"], None, ["other"], ["/init", "other"]),
        (["/init"], ["serve"], ["/bin/x"], None, ["/bin/x"]),
        (["/init"], ["serve"], ["/bin/x"], ["a"], ["/bin/x", "a"]),
        (["/init"], ["serve"], [], None, ["serve"]),
        (["/init"], ["serve"], [], ["a"], ["a"]),
    ],
)
def test_argv_combines_as_the_engine_combines_it(
    image_entrypoint, image_cmd, entrypoint, command, argv
):
    assert engine_argv(image_entrypoint, image_cmd, entrypoint, command) == argv


@pytest.mark.parametrize(
    ("argv", "env", "working_dir"),
    [
        ([], {}, None),
        (["-x"], {}, None),
        (["echo"], {"NOT-A-NAME": "v"}, None),
        (["echo"], {"1X": "v"}, None),
        (["echo", "nul\0"], {}, None),
        (["echo"], {"A": "nul\0"}, None),
    ],
)
def test_what_the_shell_cannot_do_exactly_goes_cold(argv, env, working_dir):
    assert not fits(argv, env, working_dir)


def test_the_pool_setting_reads_images_counts_and_runtimes():
    settings = Settings(
        warm_pool="busybox=2,python:3.12@sha256:ab=3@runsc", allowed_runtimes="runsc"
    )
    assert settings.warm_entries() == [
        WarmEntry("busybox", 2, None),
        WarmEntry("python:3.12@sha256:ab", 3, "runsc"),
    ]


@pytest.mark.parametrize("value", ["busybox", "busybox=0", "busybox=65", "=2", "busybox=x"])
def test_a_bad_pool_entry_is_refused_at_startup(value):
    with pytest.raises(ValueError, match="image=N"):
        Settings(warm_pool=value)


def test_a_pool_on_a_runtime_no_run_may_use_is_refused_at_startup():
    with pytest.raises(ValueError, match="no run could take it"):
        Settings(warm_pool="busybox=2@runsc")


@pytest.mark.parametrize("shell", SHELLS)
def test_the_largest_file_is_lowered_to_the_runs_limit(shell, tmp_path):
    """The cold path's `fsize` ulimit (soft and hard) is the run's scratch: the line lowers
    the pool's to it, after the content (the engine's unpacking is not held to it)."""
    content = content_steps([_file(tmp_path / "in.txt", b"x" * 4096)]) or ()
    line = command_line(
        ["sh", "-c", "ulimit -S -f; ulimit -H -f"],
        {},
        None,
        {},
        MARKER,
        as_root=True,
        content=content,
        file_size=2048,
    )
    assert _run(shell, line) == (0, MARKER.encode() + STARTED + b"4\n4\n")
    assert (tmp_path / "in.txt").stat().st_size == 4096


@pytest.mark.parametrize("shell", SHELLS)
def test_a_hostile_path_is_written_where_it_says_and_injects_nothing(shell, tmp_path):
    """A tenant's mount path goes into the line: quotes, `$(...)`, a newline stay its name."""
    injected = f"/injected-{tmp_path.name}"  # where an injection would write: sh runs in /
    hostile = tmp_path / f"it's $(touch {injected[1:]}) `touch {injected[1:]}`\nx" / "f.txt"
    line = command_line(
        ["true"],
        {},
        None,
        {},
        MARKER,
        as_root=True,
        content=content_steps([_file(hostile, b"ok")]) or (),
    )
    assert _run(shell, line) == (0, MARKER.encode() + STARTED)
    assert hostile.read_bytes() == b"ok"
    assert not os.path.exists(injected)
