"""Reading YAML into a `Source`: plain data, the position of every key and value, and the
problems YAML itself can have (syntax, duplicate keys, unknown tags, alias bombs).

This is the only module that imports ruamel.yaml. It works on ruamel's node graph rather than
its constructed objects, so that duplicate keys are all reported (not only the first) and every
value keeps its line and column.
"""

from __future__ import annotations

import io
import os
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from reconciler.config.scalars import ScalarProblem, escaped, lone_surrogate, resolve_plain
from reconciler.config.source import Loc, Position, Source, format_loc
from reconciler.errors import ConfigError, ConfigErrors

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_VALUES",
    "decode_text",
    "dump_yaml",
    "parse_yaml",
    "read_bytes",
    "read_text",
    "read_yaml",
]

MAX_BYTES = 4 * 1024 * 1024  # a desired file is a few KiB; refuse anything absurd
MAX_VALUES = 100_000  # aliases can expand exponentially ("billion laughs")
MAX_DEPTH = 32  # a desired file nests 4 levels deep, a lock file 5

_TAG = "tag:yaml.org,2002:"
_ENV = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_REF = re.compile(r"^env\.([A-Za-z_][A-Za-z0-9_]*)$")


def read_yaml(
    path: str | os.PathLike[str], display: str | None = None, *, max_values: int = MAX_VALUES
) -> Source:
    """Read and parse a YAML file; a file that cannot be read raises `ConfigErrors`."""
    file = display if display is not None else os.fspath(path)
    text = read_text(path, file)
    return parse_yaml(text, file, max_values=max_values)


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
        start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw.count(b"\n", 0, exc.start) + 1
        col = len(raw[start : exc.start].decode("utf-8-sig", "replace")) + 1
        message = f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        raise ConfigErrors([ConfigError(file, line, col, "", message)]) from None


def _fail(file: str, message: str) -> ConfigErrors:
    return ConfigErrors([ConfigError(file, 0, 0, "", message)])


def parse_yaml(
    text: str,
    file: str,
    *,
    environ: dict[str, str] | None = None,
    max_values: int = MAX_VALUES,
) -> Source:
    """Parse YAML text; a syntax error, or a file beyond the limits (`max_values` values,
    `MAX_DEPTH` levels), raises `ConfigErrors`; other problems are collected."""
    yaml = YAML(typ="safe", pure=True)
    yaml.Composer = _Composer
    composer: _Composer = yaml.composer
    composer.max_values = max_values
    try:
        root = yaml.compose(text)
    except _Refused as exc:
        raise ConfigErrors([_at(file, exc.mark, exc.message)]) from None
    except MarkedYAMLError as exc:
        from reconciler.config.yamlmessages import syntax_error  # noqa: PLC0415 (errors only)

        raise ConfigErrors([syntax_error(exc, file)]) from None
    except ReaderError as exc:
        from reconciler.config.yamlmessages import reader_error  # noqa: PLC0415

        raise ConfigErrors([reader_error(exc, text, file)]) from None
    except YAMLError as exc:
        raise ConfigErrors([ConfigError(file, 0, 0, "", f"YAML error: {exc}")]) from None
    except (ValueError, OverflowError):  # the scanner's chr() on a \U escape beyond U+10FFFF
        from reconciler.config.yamlmessages import bad_escape  # noqa: PLC0415

        raise ConfigErrors([bad_escape(text, file)]) from None
    walker = _Walker(file, os.environ if environ is None else environ, max_values)
    walker.errors += [_at(file, mark, message) for mark, message in composer.problems]
    if root is None:
        return Source(file, None, {}, tuple(walker.errors))
    data = walker.walk(root, ())
    if walker.stopped:  # what lies past the bound was not read: validating it would be wrong
        raise ConfigErrors(walker.errors)
    return Source(file, data, walker.positions, tuple(walker.errors))


class _Refused(Exception):
    """A file beyond the reader's limits, raised from inside the composer."""

    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


class _Composer(Composer):
    """ruamel's composer, bounded while it reads: nesting depth (its recursion) and number of
    values are refused before a huge file is built; a reused anchor name is a problem."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.warn_double_anchors = False
        self.max_values = MAX_VALUES
        self.values = 0
        self.problems: list[tuple[Any, str]] = []

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if not isinstance(event, AliasEvent):
            self.values += 1
            if self.values > self.max_values:
                raise _Refused(
                    event.start_mark,
                    f"more than {self.max_values} values; no file of this kind needs so many",
                )
            if self.depth >= MAX_DEPTH:
                raise _Refused(event.start_mark, _too_deep())
            if event.anchor is not None and event.anchor in self.anchors:
                first = self.anchors[event.anchor].start_mark
                self.problems.append(
                    (
                        event.start_mark,
                        f"the anchor &{escaped(event.anchor)} is already defined at line "
                        f"{first.line + 1}, col {first.column + 1}; give each anchor its own name",
                    )
                )
        return super().compose_node(parent, index)


def _too_many(limit: int) -> str:
    return f"more than {limit} values (aliases expanding?); no file of this kind needs so many"


def _too_deep() -> str:
    return f"nested deeper than {MAX_DEPTH} levels; no file of this kind needs so many"


def _at(file: str, mark: Any, message: str) -> ConfigError:
    if mark is None:
        return ConfigError(file, 0, 0, "", message)
    return ConfigError(file, mark.line + 1, mark.column + 1, "", message)


class _Walker:
    """Turns a node graph into plain data, recording positions and problems. Aliases are
    expanded, so the number of values and the depth are bounded here too; merge keys (`<<`)
    are resolved once per mapping, however often they are merged."""

    def __init__(self, file: str, environ: Any, max_values: int) -> None:
        self.file = file
        self.environ = environ
        self.max_values = max_values
        self.positions: dict[Loc, Position] = {}
        self.errors: list[ConfigError] = []
        self.count = 0
        self.stack: set[int] = set()
        self.merges: dict[int, dict[str, tuple[Node, Node]]] = {}
        self.too_deep = False

    @property
    def stopped(self) -> bool:
        """Whether a hard bound (values, depth) tripped: some values became None unread."""
        return self.count > self.max_values or self.too_deep

    def problem(self, node: Node, loc: Loc, message: str) -> None:
        mark = node.start_mark
        self.errors.append(
            ConfigError(self.file, mark.line + 1, mark.column + 1, format_loc(loc), message)
        )

    def walk(self, node: Node, loc: Loc, key: Node | None = None) -> Any:
        self.count += 1
        if self.count > self.max_values:
            if self.count == self.max_values + 1:
                self.problem(node, loc, _too_many(self.max_values))
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
        if len(loc) >= MAX_DEPTH:  # only aliases nest deeper than the composer allows
            if not self.too_deep:  # once, at the top-level key it is under
                top = self.positions[loc[:1]]
                where = (self.file, top.line, top.col, format_loc(loc[:1]))
                self.errors.append(ConfigError(*where, _too_deep() + " (through aliases)"))
            self.too_deep = True
            return None
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
        for key, value in node.value:
            if key.tag == _TAG + "merge":
                continue
            if not isinstance(key, ScalarNode):
                self.problem(key, loc, "keys must be plain words, not lists or mappings")
                continue
            name = self.key_name(key, loc)
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
        for name, (key, value) in self.merged(node, loc).items():
            if name not in out:
                out[name] = self.walk(value, (*loc, name), key)
        return out

    def key_name(self, key: ScalarNode, loc: Loc) -> str:
        name = str(key.value)
        bad = lone_surrogate(name)
        if bad is not None:
            name = escaped(name)
            self.problem(key, (*loc, name), _surrogate_message(bad))
        return name

    def merged(self, node: MappingNode, loc: Loc) -> dict[str, tuple[Node, Node]]:
        """The keys `node`'s merge keys bring in (each with its key and value node), the
        first source winning, as YAML's merge type says; computed once per mapping."""
        done = self.merges.get(id(node))
        if done is not None:
            return done
        self.merges[id(node)] = {}  # while in progress: a merge of itself brings nothing
        pairs: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            if key.tag != _TAG + "merge":
                continue
            for source in value.value if isinstance(value, SequenceNode) else [value]:
                if not isinstance(source, MappingNode):
                    self.problem(source, loc, "<< merges only mappings")
                    continue
                if source is node or id(source) in self.stack:
                    self.problem(source, loc, "a merge (<<) of the mapping it is in; remove it")
                    continue
                for k, v in source.value:
                    if k.tag != _TAG + "merge" and isinstance(k, ScalarNode):
                        pairs.setdefault(str(k.value), (k, v))
                for name, pair in self.merged(source, loc).items():
                    pairs.setdefault(name, pair)
        self.merges[id(node)] = pairs
        return pairs

    def scalar(self, node: ScalarNode, loc: Loc) -> Any:
        text = _join_pairs(str(node.value))
        bad = lone_surrogate(text)
        if bad is not None:
            self.problem(node, loc, _surrogate_message(bad))
            return escaped(text)
        tag = node.tag or ""
        try:
            if tag == _TAG + "str":
                expanded = self.expand(node, loc, text)
                if expanded != text and node.style is None:
                    return resolve_plain(expanded)
                return expanded
            if tag.startswith(_TAG):
                return resolve_plain(text) if tag[len(_TAG) :] in _PLAIN_TAGS else text
        except ScalarProblem as exc:
            self.problem(node, loc, str(exc))
            return text  # the loader reports only the reader's problem at this key
        self.problem(node, loc, f"unsupported YAML tag {escaped(tag)}; write a plain value")
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
                    f"unknown substitution {escaped(match.group(0))}; write ${{env.NAME}} to read "
                    "an environment variable, or $${ for a literal ${",
                )
                return match.group(0)
            name = ref.group(1)
            if name not in self.environ:
                self.problem(
                    node,
                    loc,
                    f"environment variable {name} is not set (used as {escaped(match.group(0))}); "
                    "export it or write the value here",
                )
                return match.group(0)
            value = str(self.environ[name])
            if lone_surrogate(value) is not None:  # bytes that are not UTF-8, escaped by Python
                self.problem(
                    node,
                    loc,
                    f"environment variable {name} is not UTF-8 text (used as "
                    f"{escaped(match.group(0))}); set it to UTF-8 text or write the value here",
                )
                return match.group(0)
            return value

        return _ENV.sub(replace, text)


_PLAIN_TAGS = {"null", "bool", "int", "float"}


def _join_pairs(text: str) -> str:
    """Surrogate pairs written as two escapes (`"\\ud83d\\ude00"`, as JSON does) joined
    into the character they encode; lone ones are left for the caller to report."""
    if lone_surrogate(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def _surrogate_message(bad: str) -> str:
    return (
        f"{bad} is half of a UTF-16 surrogate pair, not a character; write the character "
        "itself, or a \\U escape of its code point"
    )


def dump_yaml(data: Any, header: str = "") -> str:
    """Plain data as block-style YAML (flow style for lists of scalars and small mappings)."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = None  # flow style for leaves, block for containers of containers
    yaml.width = 100
    out = io.StringIO()
    out.write(header)
    yaml.dump(data, out)
    return out.getvalue()
