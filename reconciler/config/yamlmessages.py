"""ruamel's refusals in our words, located: syntax errors, characters YAML does not allow,
escapes that name no character. The exceptions are read by their attributes, so this module
needs no ruamel import (`yamlfile.py` is the only one that has it).
"""

from __future__ import annotations

import re
from typing import Any

from reconciler.config.scalars import escaped
from reconciler.errors import ConfigError

__all__ = ["bad_escape", "line_col", "reader_error", "syntax_error"]


def syntax_error(exc: Any, file: str) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
    what = exc.problem or exc.context or "invalid YAML"
    context = exc.context_mark
    elsewhere = (
        context is not None
        and mark is not None
        and (context.line, context.column) != (mark.line, mark.column)
    )
    if exc.context and exc.problem and context is not None and elsewhere:
        what += f" ({exc.context} at line {context.line + 1}, col {context.column + 1})"
    if "\\t" in what or "\t" in what:
        what += "; indent with spaces, not tabs"
    return ConfigError(file, line, col, "", f"YAML syntax error: {escaped(what, 200)}")


def line_col(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of the character at `index` of `text`."""
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def reader_error(exc: Any, text: str, file: str) -> ConfigError:
    """A character YAML does not allow (a control character, U+FFFE...)."""
    char = exc.character
    code = char if isinstance(char, int) else ord(char) if isinstance(char, str) else 0
    line, col = line_col(text, exc.position) if isinstance(exc.position, int) else (0, 0)
    return ConfigError(
        file,
        line,
        col,
        "",
        f"the character U+{code:04X} is not allowed in a YAML file; remove it, or write it "
        f'as an escape ("\\x{code:02x}") inside double quotes'
        if code < 0x100
        else f"the character U+{code:04X} is not allowed in a YAML file; remove it",
    )


def bad_escape(text: str, file: str) -> ConfigError:
    """Where a `\\U` escape names no character (the scanner says only `chr()` failed)."""
    for found in _BIG_ESCAPE.finditer(text):
        if int(found.group(1), 16) > MAX_CHAR:
            line, col = line_col(text, found.start())
            return ConfigError(
                file,
                line,
                col,
                "",
                f"\\U{found.group(1)} is beyond U+10FFFF, the last Unicode character; "
                "check the escape",
            )
    return ConfigError(file, 0, 0, "", "an escape names no Unicode character; check escapes")


_BIG_ESCAPE = re.compile(r"\\U([0-9A-Fa-f]{8})")
MAX_CHAR = 0x10FFFF
