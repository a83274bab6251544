"""Writing values into a systemd unit, an environment file or an argv template's output, so
that no value can break out of its place: a model path or name with spaces, quotes, `%`, `$`
or newlines stays one argument, one assignment, one path.

systemd (systemd.syntax(7), systemd.service(5), systemd.exec(5)):

- `%` starts a specifier everywhere in a unit file: written `%%`;
- `$` starts a variable in an `ExecStart=` argument: written `$$` (but not in `Environment=`,
  where `$` has no meaning and `$$` would stay two characters);
- arguments and assignments are double-quoted, with C escapes for `"`, `\\` and control
  characters (a newline is `\\n`);
- the program itself (the first word of `ExecStart=`) may not hold quotes, backslashes, `$`
  or control characters at all: systemd refuses such a path, so we do too, with what to do;
  it is an absolute path (or a bare name, which systemd looks up in its own search path);
- paths written bare (`WorkingDirectory=`, `EnvironmentFile=`) get `%%` and may not hold
  control characters or begin or end with white space or a backslash.

Environment files (`EnvironmentFile=`, where secret values go) take `NAME="value"` with `\\`,
`"`, `` ` `` and `$` escaped; a newline is kept as it is inside the quotes.

Every refusal is a `QuotingError` (a ValueError) whose message says what was refused; the
renderer turns it into an `ApplyError` that names the template and the line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

__all__ = [
    "QuotingError",
    "env_file_text",
    "json_arg",
    "systemd_arg",
    "systemd_command",
    "systemd_env",
    "systemd_path",
    "systemd_text",
]

_C_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_NOT_IN_PROGRAM = "\"'\\$"
_BARE = re.compile(r"[A-Za-z0-9_./:,+=@-]+")  # written without quotes: nothing to escape


class QuotingError(ValueError):
    """A value that cannot be written where it was asked to go."""


def _no_nul(value: str) -> str:
    if "\0" in value:
        raise QuotingError(f"{value!r} holds a NUL character, which no argument can hold")
    return value


def json_arg(value: object) -> str:
    """One argument in a template's JSON array: a JSON string (numbers become strings)."""
    if value is None or isinstance(value, bool | list | tuple | dict):
        raise QuotingError(
            f"`arg` takes a string or a number, got {type(value).__name__} "
            f"({value!r}); test it with {{% if ... %}} first"
        )
    return json.dumps(_no_nul(str(value)), ensure_ascii=False)


def _c_escaped(value: str) -> str:
    out = []
    for ch in _no_nul(value):
        if ch in _C_ESCAPES:
            out.append(_C_ESCAPES[ch])
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


def systemd_arg(value: object) -> str:
    """One `ExecStart=` argument after the program: quoted, `%%`, `$$`, C escapes (bare
    where it holds only letters, digits and `_./:,+=@-`)."""
    text = str(value)
    if _BARE.fullmatch(text):
        return text
    return '"' + _c_escaped(text).replace("$", "$$") + '"'


def _program(path: str) -> str:
    bad = sorted({ch for ch in path if ch in _NOT_IN_PROGRAM or ord(ch) < 0x20 or ch == "\x7f"})
    if bad:
        shown = " ".join(repr(ch) for ch in bad)
        raise QuotingError(
            f"the program {path!r} holds {shown}, which systemd does not accept in the path of "
            "a program; link it from a plain path (e.g. ln -s ... ~/bin/llama-server) and "
            "name that, or use --executor process"
        )
    if not path.startswith("/") and ("/" in path or not path):
        raise QuotingError(
            f"the program {path!r} must be an absolute path (or a bare name systemd looks up)"
        )
    return path if _BARE.fullmatch(path) else '"' + path.replace("%", "%%") + '"'


def systemd_command(argv: Iterable[object]) -> str:
    """A whole `ExecStart=` value: the program, then each argument quoted."""
    items = [str(a) for a in argv]
    if not items:
        raise QuotingError("the command is empty")
    return " ".join([_program(items[0]), *(systemd_arg(a) for a in items[1:])])


def systemd_env(assignment: object) -> str:
    """One `Environment=` assignment (`NAME=value`), quoted: `%%`, C escapes, `$` as is."""
    text = str(assignment)
    name, eq, _value = text.partition("=")
    if not eq or not name.isidentifier() or not name.isascii():
        raise QuotingError(f"{text!r} is no NAME=value assignment")
    return text if _BARE.fullmatch(text) else '"' + _c_escaped(text) + '"'


def systemd_path(value: object) -> str:
    """A path written bare (`WorkingDirectory=`, `EnvironmentFile=`): `%%`, nothing to break."""
    text = _no_nul(str(value))
    if any(ord(ch) < 0x20 or ch == "\x7f" for ch in text):
        raise QuotingError(f"the path {text!r} holds a control character (a newline?)")
    if text != text.strip() or text.endswith("\\") or not text.startswith("/"):
        raise QuotingError(
            f"the path {text!r} must be absolute and may not begin or end with white space "
            "or end with a backslash; choose another state folder"
        )
    return text.replace("%", "%%")


def systemd_text(value: object) -> str:
    """Free text on one line (`Description=`): `%%`, control characters as spaces."""
    text = "".join(" " if ord(ch) < 0x20 or ch == "\x7f" else ch for ch in str(value))
    return text.strip().replace("%", "%%").rstrip("\\")


def env_file_text(env: Mapping[str, str], header: str = "") -> str:
    """An environment file for `EnvironmentFile=`: `NAME="value"`, one per line (a value's
    own newlines stay inside its quotes)."""
    lines = [f"# {line}" for line in header.splitlines()]
    for name, value in env.items():
        if not name.isidentifier() or not name.isascii():
            raise QuotingError(f"{name!r} is no environment variable name")
        escaped = "".join("\\" + ch if ch in '\\"`$' else ch for ch in _no_nul(value))
        lines.append(f'{name}="{escaped}"')
    return "\n".join(lines) + "\n"
