"""Reading YAML into a `Source`: plain data, the position of every key and value, and the
problems YAML itself can have (syntax, duplicate keys, unknown tags, alias bombs).

This is the only module that imports ruamel.yaml. It works on ruamel's node graph rather than
its constructed objects, so that duplicate keys are all reported (not only the first) and every
value keeps its line and column.
"""

from __future__ import annotations

import io
import math
import os
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.config.source import Loc, Position, Source, format_loc
from reconciler.errors import ConfigError, ConfigErrors

__all__ = [
    "MAX_BYTES",
    "decode_text",
    "dump_yaml",
    "parse_yaml",
    "read_bytes",
    "read_text",
    "read_yaml",
]

MAX_BYTES = 4 * 1024 * 1024  # a desired file is a few KiB; refuse anything absurd
MAX_VALUES = 100_000  # aliases can expand exponentially ("billion laughs")

_TAG = "tag:yaml.org,2002:"
_ENV = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_REF = re.compile(r"^env\.([A-Za-z_][A-Za-z0-9_]*)$")
_INT = re.compile(r"^[-+]?(0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|[0-9][0-9_]*)$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$")


def read_yaml(path: str | os.PathLike[str], display: str | None = None) -> Source:
    """Read and parse a YAML file; a file that cannot be read raises `ConfigErrors`."""
    file = display if display is not None else os.fspath(path)
    text = read_text(path, file)
    return parse_yaml(text, file)


def read_text(path: str | os.PathLike[str], file: str, what: str = "a YAML file") -> str:
    """A configuration file's text, bounded in size; problems as `ConfigErrors`."""
    return decode_text(read_bytes(path, file, what), file)


def read_bytes(
    path: str | os.PathLike[str], file: str, what: str = "a YAML file", limit: int = MAX_BYTES
) -> bytes:
    """A file's bytes, at most `limit` of them; problems as `ConfigErrors` (one line each).
    Callers that digest a file read it once with this, then decode it with `decode_text`."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except FileNotFoundError:
        raise _fail(file, "no such file; check the path") from None
    except IsADirectoryError:
        raise _fail(file, f"is a directory; give the path of {what}") from None
    except PermissionError:
        raise _fail(file, "permission denied; check the file's permissions") from None
    except OSError as exc:
        raise _fail(file, f"cannot be read: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise _fail(file, f"is larger than {limit // (1024 * 1024)} MiB; is this the right file?")
    return raw


def decode_text(raw: bytes, file: str) -> str:
    """UTF-8 text (a byte order mark is dropped); anything else as `ConfigErrors`."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail(file, f"is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def _fail(file: str, message: str) -> ConfigErrors:
    return ConfigErrors([ConfigError(file, 0, 0, "", message)])


def parse_yaml(text: str, file: str, *, environ: dict[str, str] | None = None) -> Source:
    """Parse YAML text; a syntax error raises `ConfigErrors`, other problems are collected."""
    yaml = YAML(typ="rt", pure=True)
    try:
        root = yaml.compose(text)
    except MarkedYAMLError as exc:
        raise ConfigErrors([_syntax_error(exc, file)]) from None
    except YAMLError as exc:
        raise ConfigErrors([ConfigError(file, 0, 0, "", f"YAML error: {exc}")]) from None
    walker = _Walker(file, os.environ if environ is None else environ)
    if root is None:
        return Source(file, None, {}, ())
    data = walker.walk(root, ())
    return Source(file, data, walker.positions, tuple(walker.errors))


def _syntax_error(exc: MarkedYAMLError, file: str) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
    what = exc.problem or exc.context or "invalid YAML"
    context = exc.context_mark
    elsewhere = (
        context is not None
        and mark is not None
        and (context.line, context.column)
        != (
            mark.line,
            mark.column,
        )
    )
    if exc.context and exc.problem and context is not None and elsewhere:
        what += f" ({exc.context} at line {context.line + 1}, col {context.column + 1})"
    if "\\t" in what or "\t" in what:
        what += "; indent with spaces, not tabs"
    return ConfigError(file, line, col, "", f"YAML syntax error: {what}")


class _Walker:
    """Turns a node graph into plain data, recording positions and problems."""

    def __init__(self, file: str, environ: Any) -> None:
        self.file = file
        self.environ = environ
        self.positions: dict[Loc, Position] = {}
        self.errors: list[ConfigError] = []
        self.count = 0
        self.stack: set[int] = set()

    def problem(self, node: Node, loc: Loc, message: str) -> None:
        mark = node.start_mark
        self.errors.append(
            ConfigError(self.file, mark.line + 1, mark.column + 1, format_loc(loc), message)
        )

    def walk(self, node: Node, loc: Loc, key: Node | None = None) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            if self.count == MAX_VALUES + 1:
                self.problem(node, loc, f"more than {MAX_VALUES} values (aliases expanding?)")
            return None
        mark = node.start_mark
        kmark = key.start_mark if key is not None else mark
        self.positions[loc] = Position(
            mark.line + 1, mark.column + 1, kmark.line + 1, kmark.column + 1
        )
        if id(node) in self.stack:
            self.problem(node, loc, "an alias refers to itself; YAML recursion is not supported")
            return None
        if isinstance(node, ScalarNode):
            return self.scalar(node, loc)
        self.stack.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.walk(item, (*loc, i)) for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                return self.mapping(node, loc)
            return None
        finally:
            self.stack.discard(id(node))

    def mapping(self, node: MappingNode, loc: Loc) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, Node] = {}
        merges: list[Node] = []
        for key, value in node.value:
            if key.tag == _TAG + "merge":
                merges.extend(value.value if isinstance(value, SequenceNode) else [value])
                continue
            if not isinstance(key, ScalarNode):
                self.problem(key, loc, "keys must be plain words, not lists or mappings")
                continue
            name = str(key.value)
            if name in seen:
                first = seen[name].start_mark
                self.problem(
                    key,
                    (*loc, name),
                    f"duplicate key (first at line {first.line + 1}, col {first.column + 1}); "
                    "keep one of them",
                )
                continue
            seen[name] = key
            out[name] = self.walk(value, (*loc, name), key)
        for merged in merges:
            if not isinstance(merged, MappingNode):
                self.problem(merged, loc, "<< merges only mappings")
                continue
            for name, value in self.mapping(merged, loc).items():
                out.setdefault(name, value)
        return out

    def scalar(self, node: ScalarNode, loc: Loc) -> Any:
        text = str(node.value)
        tag = node.tag or ""
        if tag == _TAG + "str":
            expanded = self.expand(node, loc, text)
            if expanded != text and node.style is None:
                return _resolve_plain(expanded)
            return expanded
        if tag.startswith(_TAG):
            return _resolve_plain(text) if tag[len(_TAG) :] in _PLAIN_TAGS else text
        self.problem(node, loc, f"unsupported YAML tag {tag}; write a plain value")
        return text  # keep the text, so the tag is the only problem reported here

    def expand(self, node: ScalarNode, loc: Loc, text: str) -> str:
        """Expand `${env.NAME}`; `$${` writes a literal `${`."""
        if "$" not in text:
            return text

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            ref = _ENV_REF.match(match.group(1).strip())
            if ref is None:
                self.problem(
                    node,
                    loc,
                    f"unknown substitution {match.group(0)}; write ${{env.NAME}} to read an "
                    "environment variable, or $${ for a literal ${",
                )
                return match.group(0)
            name = ref.group(1)
            if name not in self.environ:
                self.problem(
                    node,
                    loc,
                    f"environment variable {name} is not set (used as {match.group(0)}); "
                    "export it or write the value here",
                )
                return match.group(0)
            return str(self.environ[name])

        return _ENV.sub(replace, text)


_PLAIN_TAGS = {"null", "bool", "int", "float"}


def _resolve_plain(text: str) -> Any:
    """What a plain scalar means in the YAML 1.2 core schema."""
    low = text.lower()
    if low in ("", "~", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    if _INT.match(text):
        digits = text.replace("_", "")
        sign = -1 if digits.startswith("-") else 1
        body = digits.lstrip("+-")
        base = {"0x": 16, "0o": 8, "0b": 2}.get(body[:2].lower(), 10)
        return sign * int(body[2:] if base != 10 else body, base)
    if low in (".inf", "+.inf", "-.inf", ".nan"):
        return {"-.inf": -math.inf, ".nan": math.nan}.get(low, math.inf)
    if _FLOAT.match(text) and any(ch.isdigit() for ch in text):
        return float(text.replace("_", ""))
    return text


def dump_yaml(data: Any, header: str = "") -> str:
    """Plain data as block-style YAML (flow style for lists of scalars and small mappings)."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = None  # flow style for leaves, block for containers of containers
    yaml.width = 100
    out = io.StringIO()
    out.write(header)
    yaml.dump(data, out)
    return out.getvalue()
