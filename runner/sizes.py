"""Memory sizes as people write them for `docker run --memory`: "512m", "1g", "1048576"."""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?\s*$", re.IGNORECASE)

SIZE_PATTERN = r"^\s*\d+(\.\d+)?\s*([bBkKmMgGtT]?)([iI]?[bB])?\s*$"
SIZE_WORDS = "write a number and a unit, e.g. 256m or 1g"
"""What `SIZE_PATTERN` means, said to whoever wrote something else (settings, API, CLI)."""


def at_least_pattern(minimum: int) -> str:
    """`SIZE_PATTERN`'s sizes of at least `minimum` bytes, for a JSON Schema: a whole number of
    each unit (a fraction after it), no leading zeros. A few odd forms of large enough sizes
    ("0.5g", "06m") are outside it, so no size it matches is ever refused as too small."""
    forms = []
    for unit, factor in _UNITS.items():
        if unit != "b":
            suffix = f"[{unit}{unit.upper()}]([iI]?[bB])?" if unit else "[bB]?"
            forms.append(f"{_at_least(-(-minimum // factor))}(\\.\\d+)?\\s*{suffix}")
    return f"^\\s*({'|'.join(forms)})\\s*$"


def _at_least(number: int) -> str:
    """A regular expression for the whole numbers of at least `number`, written plainly."""
    digits = str(number)
    options = [f"[1-9]\\d{{{len(digits)},}}", digits]
    for place, digit in enumerate(digits):
        if digit != "9":
            rest = len(digits) - place - 1
            options.append(f"{digits[:place]}[{int(digit) + 1}-9]\\d{{{rest}}}")
    return "(" + "|".join(options) + ")"


def parse_size(text: str) -> int:
    """Bytes in `text`; ValueError (with the accepted forms) when it is not a size."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size: {SIZE_WORDS}")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])
