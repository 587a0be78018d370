"""An async run's result, kept without its container: once the run has ended, what a later
question needs (exit, flags, output up to the caps, returned paths up to their bound) is written
into a container of its own, `oneoff-<run id>-result`, made from the carrier image and never
started; then the run's container and writable layer can go.

Such a container holds only bytes the runner wrote, so its size is known when it is written (at
most twice the output cap plus the returned-content cap) and nothing in it grows. It is read
through the archive API (`/r/result.json`, `/r/stdout`, `/r/stderr`, `/r/returned/<n>`) and
removed with the run's record: at the result's TTL, or on DELETE.
"""

from __future__ import annotations

import json
import tarfile
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import docker

from backends.docker.content import ContentCopier
from backends.docker.errors import engine_errors
from backends.docker.returned import ReturnedPaths
from backends.labels import RESULT_ROLE, ROLE
from runner import archive_streams, errors
from runner.errors import NotFound, RunnerError, Unreturnable
from runner.spec import MountSpec, Outcome

ROOT = "r"
RESULT_FILE = "result.json"
SLACK_BYTES = 1024 * 1024
"""Room for the result's own file and the archive's headers, beyond its output and content."""


def result_name(run_id: str) -> str:
    return f"oneoff-{run_id}-result"


class KeptResults:
    def __init__(
        self, api: Callable[[], docker.APIClient], content: ContentCopier, max_members: int
    ) -> None:
        self.api = api
        self.content = content
        self.returned = ReturnedPaths(api, max_members)

    def keep(self, run_id: str, labels: dict[str, str], kept: Outcome | RunnerError) -> bool:
        """Write the run's result (or the error collecting it raised, to be raised again to
        whoever asks); False when a result is there already (another runner keeps it)."""
        try:
            with engine_errors("keeping the run's result"):
                made = self.content.carrier({**labels, ROLE: RESULT_ROLE}, result_name(run_id))
        except errors.Conflict:
            return False
        try:
            with engine_errors("keeping the run's result"):
                self.api().put_archive(made, "/", _result_tar(kept))
        except BaseException:
            self.remove(run_id)
            raise
        return True

    def outcome(self, run_id: str, limit: int) -> Outcome | None:
        """The kept result (None when none is kept); raises the error collecting it raised.
        `limit`: the most the result may hold (its caps)."""
        files = self._read(run_id, limit + SLACK_BYTES)
        if files is None:
            return None
        result = _result(files[RESULT_FILE])
        return Outcome(
            exit_code=result["exit_code"],
            stdout=files.get("stdout", b""),
            stderr=files.get("stderr", b""),
            stdout_truncated=result["stdout_truncated"],
            stderr_truncated=result["stderr_truncated"],
            timed_out=result["timed_out"],
            oom_killed=result["oom_killed"],
            scratch_exceeded=result["scratch_exceeded"],
            returned={
                path: (kind, files[f"returned/{index}"])
                for index, (path, kind) in enumerate(result["returned"])
            },
            unreturned={path: (kind, why) for path, (kind, why) in result["unreturned"].items()},
        )

    def output(self, run_id: str, limit: int) -> list[tuple[str, bytes]] | None:
        """The kept output, as (stream, bytes) pairs; None when no result is kept."""
        found = [(name, self._read_file(run_id, name, limit)) for name in ("stdout", "stderr")]
        if any(data is None for _, data in found):
            return None
        return [(name, data) for name, data in found if data]

    def file(self, run_id: str, path: str, limit: int) -> tuple[str, Iterator[bytes]] | None:
        """A kept returned path as `run_file` hands it out: a file's bytes, or a plain tar of a
        directory with names relative to it; None when no result is kept."""
        kept = self._read_file(run_id, RESULT_FILE, SLACK_BYTES)
        if kept is None:
            return None
        result = _result(kept)
        if path in result["unreturned"]:
            raise Unreturnable(result["unreturned"][path][1], field="path")
        returned = result["returned"]
        for index, (kept_path, kind) in enumerate(returned):
            if kept_path == path:
                data = self._stream(run_id, f"returned/{index}", limit)
                return kind, data if kind == "file" else _gunzipped(data)
        paths = ", ".join(kept_path for kept_path, _ in returned) or "nothing"
        raise NotFound(
            f"path: {path!r} is not a `response: true` path of run {run_id!r} (it returns: "
            f"{paths})",
            field="path",
        )

    def whole(self, run_id: str) -> bool:
        """Whether the run's result is all written (its own file is written last)."""
        return self._read_file(run_id, RESULT_FILE, SLACK_BYTES) is not None

    def remove(self, run_id: str) -> None:
        try:
            with engine_errors("removing the run's result"):
                self.api().remove_container(result_name(run_id), force=True)
        except NotFound:
            pass  # already gone

    def _stream(self, run_id: str, name: str | None, limit: int) -> Iterator[bytes]:
        """A file of the result (its bytes), or (None) the whole result as a plain tar with
        names relative to its root; NotFound when none is kept."""
        if name is None:
            mount = MountSpec(key="result", path=f"/{ROOT}", read_only=False, kind="directory")
        else:
            mount = MountSpec(key="result", path=f"/{ROOT}/{name}", read_only=False, kind="file")
        return self.returned.stream(result_name(run_id), mount, limit)

    def _read_file(self, run_id: str, name: str, limit: int) -> bytes | None:
        """A file of the result; None when none is kept, or it is not written yet."""
        try:
            return b"".join(self._stream(run_id, name, limit))
        except (NotFound, Unreturnable):
            return None

    def _read(self, run_id: str, limit: int) -> dict[str, bytes] | None:
        """The result's files by name; None when none is kept, or it is not written yet."""
        chunks = self._stream(run_id, None, limit)
        reader = archive_streams.ChunkReader(chunks, limit, "result")
        found: dict[str, bytes] = {}
        try:
            with (
                archive_streams.released(chunks),
                tarfile.open(fileobj=reader, mode="r|") as archive,
            ):
                for member in archive:
                    extracted = archive.extractfile(member) if member.isfile() else None
                    if extracted is not None:
                        found[member.name] = extracted.read()
        except (NotFound, Unreturnable):
            return None
        return found


def _result(text: bytes) -> dict[str, Any]:
    """The result's own file; the error collecting the result raised, raised again."""
    result: dict[str, Any] = json.loads(text)
    if result.get("error"):
        raise _error(result["error"])
    return result


def _result_tar(kept: Outcome | RunnerError) -> Iterator[bytes]:
    yield archive_streams.entry(f"{ROOT}/", None, 0o755)
    yield archive_streams.entry(f"{ROOT}/returned/", None, 0o755)
    if isinstance(kept, RunnerError):
        error = {"code": kept.code, "message": kept.message, "field": kept.field}
        yield _file(RESULT_FILE, json.dumps({"error": error}).encode())
        yield archive_streams.TAR_END
        return
    result = {
        "exit_code": kept.exit_code,
        "stdout_truncated": kept.stdout_truncated,
        "stderr_truncated": kept.stderr_truncated,
        "timed_out": kept.timed_out,
        "oom_killed": kept.oom_killed,
        "scratch_exceeded": kept.scratch_exceeded,
        "returned": [[path, kind] for path, (kind, _) in kept.returned.items()],
        "unreturned": {path: [kind, why] for path, (kind, why) in kept.unreturned.items()},
        "error": None,
    }
    yield _file("stdout", kept.stdout)
    yield _file("stderr", kept.stderr)
    for index, (_, content) in enumerate(kept.returned.values()):
        yield _file(f"returned/{index}", content)
    yield _file(RESULT_FILE, json.dumps(result).encode())  # last: a result has all its files
    yield archive_streams.TAR_END


def _file(name: str, content: bytes) -> bytes:
    return archive_streams.entry(f"{ROOT}/{name}", content, 0o644)


def _gunzipped(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """A directory's kept tar.gz as the plain tar it holds (names already relative to it)."""
    inflate = zlib.decompressobj(wbits=31)
    with archive_streams.released(chunks):
        for chunk in chunks:
            if data := inflate.decompress(chunk):
                yield data
    if rest := inflate.flush():
        yield rest


def _error(kept: dict[str, Any]) -> RunnerError:
    """The error collecting the result raised, as its own class when the runner has it."""
    classes: list[type[RunnerError]] = [RunnerError, *_subclasses(RunnerError)]
    chosen = next((cls for cls in classes if cls.code == kept["code"]), RunnerError)
    if issubclass(chosen, errors.Busy):
        chosen = RunnerError  # takes other arguments; never kept anyway
    return chosen(kept["message"], field=kept.get("field"))


def _subclasses(cls: type[RunnerError]) -> list[type[RunnerError]]:
    found: list[type[RunnerError]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found
