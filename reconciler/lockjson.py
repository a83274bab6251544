"""The lock file's JSON: parsed with `json` (C speed), its problems located without a YAML
reader.

A lock file is JSON under `#` comment lines (see `lockfile`). Reading one must stay quick even
when it is broken: the YAML reader takes seconds on a lock file of a few hundred KiB, so a
JSON lock's syntax errors come from `json` itself (line and column), and the position of a
value that does not validate is found by walking the text along that value's path only,
skipping every sibling with `json`'s own decoder. Numbers are bounded (a lock never holds
more than 20 digits), and so is the nesting (a lock is 6 levels deep).
"""

from __future__ import annotations

import json
import re
from typing import Any

from reconciler.config.source import Loc, Position
from reconciler.errors import ConfigError

__all__ = ["LockJson", "NotJson", "json_body", "locate", "parse_json"]

MAX_DIGITS = 40  # a lock's largest number (a file size) has 16
_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:]')


class NotJson(Exception):
    """The text is not a JSON lock file: read it as YAML (an older lock file)."""


class LockJson(Exception):
    """A JSON lock file that does not parse: its problem, located."""

    def __init__(self, error: ConfigError) -> None:
        self.error = error
        super().__init__(error.render())


class _TooLong(Exception):
    def __init__(self, digits: str) -> None:
        self.digits = digits
        super().__init__(digits[:20])


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(key)


def json_body(text: str) -> tuple[int, int]:
    """(offset, line count) of what follows the leading `#` comment and blank lines."""
    offset = lines = 0
    while offset < len(text) and text[offset] in "#\n":
        end = text.find("\n", offset)
        if end < 0:
            return len(text), lines
        offset, lines = end + 1, lines + 1
    return offset, lines


def _int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_DIGITS:
        raise _TooLong(digits)
    return int(digits)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return out


def _at(file: str, text: str, offset: int, message: str) -> LockJson:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return LockJson(ConfigError(file, line, col, "", message))


def parse_json(text: str, file: str) -> Any:
    """The data of a JSON lock file; `NotJson` where the text is not JSON at all (an old
    YAML lock), `LockJson` for a JSON one that does not parse."""
    start, _lines = json_body(text)
    first = _SPACE.match(text, start)
    if first is None or not text.startswith("{", first.end()):
        raise NotJson
    again = "; run `reconcile lock` to write it again"
    decoder = json.JSONDecoder(object_pairs_hook=_pairs, parse_int=_int)
    try:
        data, end = decoder.raw_decode(text, first.end())
        _only_comments(text, end)
    except json.JSONDecodeError as exc:
        what = exc.msg.removesuffix(" starting at")
        raise _at(file, text, exc.pos, f"JSON syntax error: {what}{again}") from None
    except _TooLong as exc:
        where = text.find(exc.digits[:MAX_DIGITS], start)
        message = f"a number of {len(exc.digits.lstrip('-'))} digits{again}"
        raise _at(file, text, max(where, start), message) from None
    except _Duplicate as exc:
        where = _duplicate_at(text, start, exc.key)
        raise _at(
            file, text, max(where, start), f"duplicate key {json.dumps(exc.key)}{again}"
        ) from None
    except RecursionError:
        message = f"nested more deeply than a lock file ever is{again}"
        raise _at(file, text, start, message) from None
    return data


def _duplicate_at(text: str, start: int, key: str) -> int:
    """Offset of the second `key` within one object (the duplicate the decoder met), found by
    a scan of strings and brackets that keeps the keys of each open object; `start` if none."""
    keys: list[set[str] | None] = []  # one entry per open bracket; None for a list
    string: tuple[int, str] | None = None  # the last string, until a ':' makes it a key
    for match in _TOKEN.finditer(text, start):
        token = match.group()
        if token == ":" and string is not None and keys and keys[-1] is not None:
            name = json.loads(string[1])
            if name == key and name in keys[-1]:
                return string[0]
            keys[-1].add(name)
        elif token in "{[":
            keys.append(set() if token == "{" else None)
        elif token in "}]" and keys:
            keys.pop()
        string = (match.start(), token) if token.startswith('"') else None
    return start


def _only_comments(text: str, at: int) -> None:
    """After the JSON only blank lines and YAML comments (a note added by hand) may follow."""
    for offset, line in _lines_from(text, at):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            raise json.JSONDecodeError("Extra data", text, offset + line.index(stripped[0]))


def _lines_from(text: str, at: int) -> list[tuple[int, str]]:
    out, offset = [], at
    for line in text[at:].split("\n"):
        out.append((offset, line))
        offset += len(line) + 1
    return out


def _skip(text: str, at: int) -> int:
    """The offset just after the JSON value at `at` (which has been parsed once already)."""
    return _DECODER.raw_decode(text, at)[1]


def _space(text: str, at: int) -> int:
    match = _SPACE.match(text, at)
    return match.end() if match else at


def locate(text: str, loc: Loc) -> dict[Loc, Position]:
    """The positions of `loc` and of each container on the way to it, found by walking the
    (valid) JSON text along that path only."""
    start, _lines = json_body(text)
    at = _space(text, start)
    found: dict[Loc, Position] = {}

    def position(value_at: int, key_at: int) -> Position:
        line = text.count("\n", 0, value_at) + 1
        col = value_at - (text.rfind("\n", 0, value_at) + 1) + 1
        key_line = text.count("\n", 0, key_at) + 1
        key_col = key_at - (text.rfind("\n", 0, key_at) + 1) + 1
        return Position(line, col, key_line, key_col)

    found[()] = position(at, at)
    for depth, part in enumerate(loc):
        step = _step(text, at, part)
        if step is None:
            break
        key_at, at = step
        found[loc[: depth + 1]] = position(at, key_at)
    return found


def _step(text: str, at: int, part: str | int) -> tuple[int, int] | None:
    """In the object or array at `at`: (offset of the key or item, offset of its value)."""
    if text.startswith("{", at) and isinstance(part, str):
        at = _space(text, at + 1)
        while text.startswith('"', at):
            key, after = _DECODER.raw_decode(text, at)
            value_at = _space(text, _space(text, after) + 1)  # past the colon
            if key == part:
                return at, value_at
            at = _space(text, _skip(text, value_at))
            at = _space(text, at + 1) if text.startswith(",", at) else at
        return None
    if text.startswith("[", at) and isinstance(part, int):
        at = _space(text, at + 1)
        for _ in range(part):
            if text.startswith("]", at):
                return None
            at = _space(text, _skip(text, at))
            at = _space(text, at + 1) if text.startswith(",", at) else at
        return (at, at) if not text.startswith("]", at) else None
    return None
