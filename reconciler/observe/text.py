"""Text read from the machine (process names, command lines, users, GPU names), made safe to print.

A process name or argument is bytes to the kernel; Python decodes what is not UTF-8 to lone
surrogates (`surrogateescape`), which no JSON writer and no UTF-8 terminal accepts, and a control
character (ESC, NUL) would be printed raw. Both are written as backslash escapes instead.
"""

from __future__ import annotations

import re

__all__ = ["clean_text"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(value: str | bytes) -> str:
    """`value` as printable UTF-8 text: undecodable bytes and control characters (other than
    tab and newline) as backslash escapes (`\\xff`, `\\x1b`)."""
    raw = value if isinstance(value, bytes) else _encoded(value)
    text = raw.decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _encoded(value: str) -> bytes:
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no decoder made: keep it visible
        return value.encode("utf-8", "backslashreplace")
