"""Memory sizes as people write them for `docker run --memory`: "512m", "1g", "1048576"."""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?\s*$", re.IGNORECASE)

SIZE_PATTERN = r"^\s*\d+(\.\d+)?\s*([bBkKmMgGtT]?)([iI]?[bB])?\s*$"
SIZE_WORDS = "write a number and a unit, e.g. 256m or 1g"
"""What `SIZE_PATTERN` means, said to whoever wrote something else (settings, API, CLI)."""


def parse_size(text: str) -> int:
    """Bytes in `text`; ValueError (with the accepted forms) when it is not a size."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size: {SIZE_WORDS}")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])
