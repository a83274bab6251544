"""What a plain YAML scalar means (YAML 1.2 core schema), bounded so that no text of a file
can make Python fail: numbers of thousands of digits, floats beyond the largest double,
characters that are not characters (lone surrogates) are problems with a message.

No ruamel here: the reader (`yamlfile.py`) hands over the scalar's text.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "MAX_DIGITS",
    "ScalarProblem",
    "escaped",
    "lone_surrogate",
    "resolve_plain",
]

#: The longest number a configuration file needs: byte counts and fingerprints fit in 20
#: digits; anything longer is a typo or an attack on Python's int/str conversions.
MAX_DIGITS = 40

_INT = re.compile(r"^[-+]?(0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|[0-9][0-9_]*)$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$")
_SURROGATE = re.compile("[\ud800-\udfff]")


class ScalarProblem(ValueError):
    """A scalar whose text cannot be a value; the message says why and what to write."""


def resolve_plain(text: str) -> Any:
    """What a plain scalar means in the YAML 1.2 core schema; `ScalarProblem` for a number
    that is too long or too large."""
    low = text.lower()
    if low in ("", "~", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    if _INT.match(text):
        return _integer(text)
    if low in (".inf", "+.inf", "-.inf", ".nan"):
        return {"-.inf": -math.inf, ".nan": math.nan}.get(low, math.inf)
    if _FLOAT.match(text) and any(ch.isdigit() for ch in text):
        return _float(text)
    return text


def _integer(text: str) -> int:
    digits = text.replace("_", "")
    sign = -1 if digits.startswith("-") else 1
    body = digits.lstrip("+-")
    base = {"0x": 16, "0o": 8, "0b": 2}.get(body[:2].lower(), 10)
    body = body[2:] if base != 10 else body
    if len(body) > MAX_DIGITS * (4 if base == 2 else 1):
        raise ScalarProblem(
            f"a number of {len(body)} digits is larger than any value here; "
            f"numbers have at most {MAX_DIGITS} digits"
        )
    return sign * int(body, base)


def _float(text: str) -> float:
    mantissa = re.split("[eE]", text.replace("_", ""))[0]
    if sum(ch.isdigit() for ch in mantissa) > MAX_DIGITS:
        raise ScalarProblem(
            f"a number of {sum(ch.isdigit() for ch in mantissa)} digits is larger than any "
            f"value here; numbers have at most {MAX_DIGITS} digits"
        )
    value = float(text.replace("_", ""))
    if math.isinf(value):
        raise ScalarProblem(
            f"{escaped(text, 30)} is too large for a number (the largest is about 1.8e308)"
        )
    return value


def lone_surrogate(text: str) -> str | None:
    """The first lone surrogate in `text` (as `\\udXXX`), which no file can hold: it is
    half of a UTF-16 pair, written as a `\\u` escape; None when there is none."""
    found = _SURROGATE.search(text)
    return None if found is None else f"\\u{ord(found.group(0)):04x}"


def escaped(text: str, limit: int = 60) -> str:
    """`text` safe to print anywhere: control characters and lone surrogates escaped as in a
    Python string, cut after `limit` characters."""
    if text.isprintable() and lone_surrogate(text) is None:
        out = text
    else:
        out = text.encode("unicode_escape").decode("ascii")
    return out if len(out) <= limit else out[: limit - 3] + "..."
