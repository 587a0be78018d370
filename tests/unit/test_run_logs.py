"""An async run's log as the engine frames it (`backends.docker.run_state.OutputStream`): a warm
container's starts with its shell's word that the command starts, which is not the run's."""

from __future__ import annotations

import io
import socket

import pytest
import requests

from backends.docker.run_state import FRAME_HEADER, OutputStream

WORD = b"0123456789abcdef+"


def _stream(frames: list[tuple[int, bytes]], prefix: bytes) -> list[tuple[str, bytes]]:
    response = requests.Response()
    response.raw = io.BytesIO(b"".join(FRAME_HEADER.pack(kind, len(d)) + d for kind, d in frames))
    left, right = socket.socketpair()
    try:
        return list(OutputStream(response, left, prefix))
    finally:
        left.close()
        right.close()


@pytest.mark.parametrize(
    "frames",
    [
        [(1, WORD + b"out\n"), (2, b"err\n")],
        [(1, WORD[:5]), (2, b"err\n"), (1, WORD[5:] + b"out\n")],  # split by the engine
        [(1, WORD), (2, b"err\n"), (1, b"out\n")],
    ],
    ids=["whole", "split", "alone"],
)
def test_the_shells_word_is_taken_off_the_front_of_stdout(frames):
    pairs = _stream(frames, WORD)
    assert b"".join(data for kind, data in pairs if kind == "stdout") == b"out\n"
    assert b"".join(data for kind, data in pairs if kind == "stderr") == b"err\n"


def test_a_log_that_lost_its_start_to_rotation_keeps_every_byte_it_has():
    pairs = _stream([(1, b"later output\n")], WORD)
    assert pairs == [("stdout", b"later output\n")]
