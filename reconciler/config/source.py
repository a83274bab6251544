"""A configuration file as plain data plus where each value came from.

`Source` is what the YAML reader produces and what every later check uses to point at a
`file:line:col`. It holds no YAML objects: the data are dicts, lists and scalars.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from reconciler.config.scalars import escaped
from reconciler.errors import ConfigError

__all__ = [
    "Loc",
    "Position",
    "Source",
    "format_loc",
    "suggest",
]

Loc: TypeAlias = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    """1-based line and column of a value and, inside a mapping, of its key."""

    line: int
    col: int
    key_line: int
    key_col: int


@dataclass(frozen=True)
class Source:
    file: str
    data: Any
    positions: dict[Loc, Position] = field(default_factory=dict)
    errors: tuple[ConfigError, ...] = ()

    def locate(self, loc: Loc, *, at_key: bool = False) -> tuple[int, int]:
        """The line and column of `loc`, or of its nearest ancestor that has a position."""
        for cut in range(len(loc), -1, -1):
            pos = self.positions.get(loc[:cut])
            if pos is not None:
                if at_key and cut == len(loc):
                    return pos.key_line, pos.key_col
                return pos.line, pos.col
        return 1, 1

    def error(self, loc: Loc, message: str, *, at_key: bool = False) -> ConfigError:
        line, col = self.locate(loc, at_key=at_key)
        return ConfigError(self.file, line, col, format_loc(loc), message)


def format_loc(loc: Iterable[str | int]) -> str:
    """`("models", 2, "ctx")` -> `models[2].ctx`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = escaped(str(part))  # a key as the user wrote it: printable, cut short
            out += f".{name}" if out else name
    return out


def suggest(word: str, options: Iterable[str]) -> str:
    """`; did you mean "priority"?` when one option is close, else the list of options."""
    options = sorted(options)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f'; did you mean "{close[0]}"?'
    if options and len(options) <= 12:
        return "; expected one of: " + ", ".join(options)
    return ""
