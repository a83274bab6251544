"""The lock file: what the estimator needs from each GGUF, so CI can estimate without weights.

`desired.lock.yaml` sits beside `desired.yaml`. Per model it holds the `ModelFacts` distilled
from the GGUF header (architecture, per-layer sizes, heads, vocabulary, file size and a
fingerprint of the header). Where the GGUF is present it wins, and a lock entry that no longer
matches it is reported; where it is absent (CI), the lock entry is used.

The file is JSON under a few `#` comment lines: valid YAML too, so readers that take it as
YAML (older versions of this tool) read the same data. It is parsed with `json` (a lock of 80
layers in about a millisecond, against 110 ms through the YAML reader), once per process for
each version of the file (`load_lock` caches by path, size, mtime and inode); only a file
that is not valid JSON, or not a valid lock, goes through the YAML reader: an old YAML lock
file, or a broken one whose problems are then reported at their `file:line:col`. Entries
are held to the same bounds as facts read from a GGUF (`ModelFacts`: 1 to 512 layers, no
negative sizes). A lock file must be a regular file of at most 4 MiB.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from reconciler.atomicfile import write_atomically
from reconciler.config.desired import Desired, ModelSpec
from reconciler.config.messages import translate
from reconciler.config.source import Source
from reconciler.config.yamlfile import MAX_BYTES, decode_text, parse_yaml
from reconciler.errors import ConfigError, ConfigErrors, ReconcileError
from reconciler.estimate.facts import FactsError, ModelFacts, facts_from_header
from reconciler.frozen import Frozen
from reconciler.gguf.reader import ModelFileError, read_gguf
from reconciler.gguf.regular import NotRegular, open_regular, present
from reconciler.lockjson import LockJson, NotJson, locate, parse_json

__all__ = [
    "LockEntry",
    "LockFile",
    "LockWriteError",
    "MissingLockEntry",
    "Resolved",
    "dump_lock",
    "facts_from_file",
    "load_lock",
    "lock_path",
    "make_lock",
    "parse_lock",
    "read_lock",
    "resolve_facts",
    "write_lock",
]

HEADER = (
    "# Written by `reconcile lock`: what the estimator needs from each GGUF file, so that\n"
    "# `reconcile check` and `plan` work where the weights are absent (CI). Commit it;\n"
    "# regenerate it when a model file changes. JSON (and so also YAML).\n"
)
RERUN = "reconcile lock"
MAX_YAML_BYTES = 256 * 1024  # an old YAML lock of 25 models of 80 layers; about 1 s to read
MAX_REPORTED = 20  # problems listed of a broken lock file (thousands of layers, all wrong)


class LockWriteError(ReconcileError):
    """The lock file could not be written (a read-only folder, a full disk)."""


class LockEntry(Frozen):
    gguf: str
    facts: ModelFacts


class LockFile(Frozen):
    version: Literal[1] = 1
    models: dict[str, LockEntry] = Field(default_factory=dict)


@dataclass(frozen=True)
class Resolved:
    facts: ModelFacts
    origin: Literal["gguf", "lock"]
    warning: str | None = None


def lock_path(desired_path: str | os.PathLike[str]) -> Path:
    """`desired.yaml` -> `desired.lock.yaml` beside it."""
    path = Path(desired_path)
    return path.with_name(f"{path.stem}.lock.yaml")


def facts_from_file(path: str | os.PathLike[str]) -> ModelFacts:
    """A GGUF's facts; a file that cannot be read or used is one `ModelFileError` naming it."""
    header = read_gguf(path)
    tensors = [(t.name, t.shape, t.type, t.nbytes) for t in header.tensors]
    try:
        return facts_from_header(header.metadata, tensors, header.file_size, header.fingerprint)
    except FactsError as exc:
        raise ModelFileError(f"{header.path}: {exc}") from None


Identity = tuple[str, int, int, int]
# path -> (identity, the lock or its problems, sha256 of its bytes): one parse per process for
# each version of each lock file (`check` with several profiles, `watch` every cycle).
_CACHE: dict[str, tuple[Identity, LockFile | tuple[ConfigError, ...], str]] = {}


def _problem(file: str, message: str) -> ConfigErrors:
    return ConfigErrors([ConfigError(file, 0, 0, "", message)], rerun=RERUN)


def _identity(path: Path, st: os.stat_result) -> Identity:
    return (os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ino)


def load_lock(path: Path) -> tuple[LockFile | None, str | None]:
    """The lock file at `path` and the sha256 of its bytes; (None, None) where there is none.
    Read and parsed again only when its identity changes (a broken one stays broken until
    then, as `ConfigErrors`)."""
    key = os.fspath(path)
    if not present(path):
        _CACHE.pop(key, None)
        return None, None
    hit = _CACHE.get(key)
    try:
        if hit is not None and hit[0] == _identity(path, os.stat(path)):
            return _result(hit)
    except OSError:
        pass  # opening it says what is wrong
    try:
        handle, st = open_regular(path)
    except NotRegular as exc:
        hint = "; give the path of a lock file" if "not a regular file" in exc.reason else ""
        raise _problem(key, f"{exc.reason}{hint}") from None
    with handle:
        try:
            raw = handle.read(MAX_BYTES + 1)
        except OSError as exc:
            raise _problem(key, f"cannot be read: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise _problem(
            key, f"is larger than {MAX_BYTES // (1024 * 1024)} MiB; is this the lock file?"
        )
    parsed: LockFile | tuple[ConfigError, ...]
    try:
        parsed = parse_lock(decode_text(raw, key), key)
    except ConfigErrors as exc:
        parsed = exc.errors
    hit = (_identity(path, st), parsed, hashlib.sha256(raw).hexdigest())
    _CACHE[key] = hit
    return _result(hit)


def _result(
    hit: tuple[Identity, LockFile | tuple[ConfigError, ...], str],
) -> tuple[LockFile, str]:
    _, lock, sha = hit
    if isinstance(lock, tuple):
        raise ConfigErrors(lock, rerun=RERUN)
    return lock, sha


def read_lock(path: Path) -> LockFile | None:
    """The lock file at `path`, or None where there is none."""
    return load_lock(path)[0]


def parse_lock(text: str, file: str) -> LockFile:
    """A lock file's text, validated; problems as `ConfigErrors` at their `file:line:col`.

    JSON (what `reconcile lock` writes) is parsed and its problems located without the YAML
    reader; an older YAML lock file goes through the YAML reader, up to `MAX_YAML_BYTES`."""
    try:
        data = parse_json(text, file)
    except NotJson:
        return _parse_yaml(text, file)
    except LockJson as exc:
        raise ConfigErrors([exc.error], rerun=RERUN) from None
    try:
        return LockFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigErrors(_located(exc, text, file, data), rerun=RERUN) from None


def _located(exc: ValidationError, text: str, file: str, data: Any) -> list[ConfigError]:
    """The first `MAX_REPORTED` problems at their positions, and how many more there are."""
    errors = exc.errors(include_url=False)
    positions = {}
    for err in errors[:MAX_REPORTED]:
        positions.update(locate(text, tuple(err["loc"])))
    found = translate(exc, Source(file, data, positions), LockFile)[:MAX_REPORTED]
    if len(errors) > MAX_REPORTED:
        more = len(errors) - MAX_REPORTED
        found.append(ConfigError(file, 0, 0, "", f"and {more} more problems like these"))
    return found


def _parse_yaml(text: str, file: str) -> LockFile:
    if len(text) > MAX_YAML_BYTES:
        raise _problem(
            file,
            f"is a YAML lock file larger than {MAX_YAML_BYTES // 1024} KiB (an older format, slow "
            "to read); run `reconcile lock` to write it again as JSON",
        )
    source = parse_yaml(text, file)
    if source.errors:
        raise ConfigErrors(source.errors, rerun=RERUN)
    try:
        return LockFile.model_validate(source.data)
    except ValidationError as exc:
        raise ConfigErrors(translate(exc, source, LockFile), rerun=RERUN) from None


def resolve_facts(
    model: ModelSpec,
    lock: LockFile | None,
    lock_file: Path,
    read: Callable[[Path], ModelFacts] = facts_from_file,
) -> Resolved:
    """Facts for a llama.cpp model: from its GGUF when present (read by `read`, which may
    cache), else from the lock file."""
    if model.gguf is None:
        raise ModelFileError(f"model {model.name} has no GGUF file to estimate from")
    entry = lock.models.get(model.name) if lock is not None else None
    if present(model.gguf):
        facts = read(model.gguf)
        warning = None
        if entry is not None and entry.facts.fingerprint != facts.fingerprint:
            warning = (
                f"{model.gguf} no longer matches its entry in {lock_file}; "
                f"run `reconcile lock` to update it"
            )
        return Resolved(facts, "gguf", warning)
    if entry is None:
        raise ModelFileError(
            f"{model.gguf}: no such file, and {lock_file} has no entry for model {model.name}; "
            "run `reconcile lock` where the file exists, and commit the lock file"
        )
    return Resolved(entry.facts, "lock")


class MissingLockEntry(ModelFileError):
    """A model whose GGUF is absent here and that has no entry in the old lock to keep."""


def make_lock(desired: Desired, old: LockFile | None) -> tuple[LockFile, list[str]]:
    """A new lock from the GGUF files present; entries of absent files are kept from `old`."""
    models: dict[str, LockEntry] = {}
    notes: list[str] = []
    for model in desired.models:
        if model.backend != "llama.cpp" or model.gguf is None:
            continue
        previous = old.models.get(model.name) if old is not None else None
        if present(model.gguf):
            facts = facts_from_file(model.gguf)
            models[model.name] = LockEntry(gguf=str(model.gguf), facts=facts)
            changed = previous is not None and previous.facts.fingerprint != facts.fingerprint
            state = "updated" if changed else ("unchanged" if previous else "added")
            notes.append(f"{model.name}: {state} from {model.gguf}")
        elif previous is not None:
            models[model.name] = previous
            notes.append(f"{model.name}: kept (file absent here: {model.gguf})")
        else:
            raise MissingLockEntry(
                f"{model.gguf}: no such file, and no earlier lock entry for model {model.name}; "
                "run `reconcile lock` where the model files are"
            )
    return LockFile(models=models), notes


def _render(value: Any, depth: int) -> str:
    """JSON a person can diff: one key per line, one layer (an item of a list) per line."""
    pad, end = "  " * (depth + 1), "  " * depth
    if isinstance(value, dict) and value:
        items = [f"{pad}{json.dumps(k)}: {_render(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(value, list) and value:
        items = [pad + json.dumps(v, separators=(", ", ": ")) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + end + "]"
    return json.dumps(value)


def dump_lock(lock: LockFile, header: str = HEADER) -> str:
    """The lock file's text: `header` (comment lines), then the lock as JSON."""
    return header + _render(lock.model_dump(mode="json"), 0) + "\n"


def write_lock(lock: LockFile, path: Path, header: str = HEADER) -> None:
    """Write atomically (a reader never sees half a lock file), readable like any file; a
    folder we may not write to is a `LockWriteError`, not a traceback."""
    try:
        write_atomically(path, dump_lock(lock, header))
    except OSError as exc:
        raise LockWriteError(f"{path}: cannot write the lock file: {_why(exc, path)}") from None


def _why(exc: OSError, path: Path) -> str:
    """What went wrong writing the lock, and what to try: permissions only where they are the
    cause."""
    folder = path.parent if str(path.parent) else Path(".")
    if exc.errno == errno.EISDIR:
        return "it is a directory; remove or rename that directory"
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device holding {folder}; free some space"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"{exc.strerror or exc}; run `reconcile lock` where you may write to {folder}, "
            "or fix that folder's permissions"
        )
    return f"{exc.strerror or exc}"
