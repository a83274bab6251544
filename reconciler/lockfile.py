"""The lock file: what the estimator needs from each GGUF, so CI can estimate without weights.

`desired.lock.yaml` sits beside `desired.yaml`. Per model it holds the `ModelFacts` distilled
from the GGUF header (architecture, per-layer sizes, heads, vocabulary, file size and a
fingerprint of the header). Where the GGUF is present it wins, and a lock entry that no longer
matches it is reported; where it is absent (CI), the lock entry is used.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from reconciler.config.desired import Desired, ModelSpec
from reconciler.config.messages import translate
from reconciler.config.yamlfile import dump_yaml, parse_yaml, read_text
from reconciler.errors import ConfigErrors
from reconciler.estimate.facts import FactsError, ModelFacts, facts_from_header
from reconciler.frozen import Frozen
from reconciler.gguf.reader import ModelFileError, read_gguf

__all__ = [
    "LockEntry",
    "LockFile",
    "Resolved",
    "facts_from_file",
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
    "# regenerate it when a model file changes.\n"
)


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


def read_lock(path: Path) -> LockFile | None:
    """The lock file at `path`, or None where there is none."""
    if not path.exists():
        return None
    return parse_lock(read_text(path, str(path)), str(path))


def parse_lock(text: str, file: str) -> LockFile:
    """A lock file's text, validated; problems as `ConfigErrors` at their `file:line:col`."""
    source = parse_yaml(text, file)
    try:
        return LockFile.model_validate(source.data)
    except ValidationError as exc:
        errors = translate(exc, source, LockFile)
        raise ConfigErrors(errors) from None


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
    if model.gguf.exists():
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


def make_lock(desired: Desired, old: LockFile | None) -> tuple[LockFile, list[str]]:
    """A new lock from the GGUF files present; entries of absent files are kept from `old`."""
    models: dict[str, LockEntry] = {}
    notes: list[str] = []
    for model in desired.models:
        if model.backend != "llama.cpp" or model.gguf is None:
            continue
        previous = old.models.get(model.name) if old is not None else None
        if model.gguf.exists():
            facts = facts_from_file(model.gguf)
            models[model.name] = LockEntry(gguf=str(model.gguf), facts=facts)
            changed = previous is not None and previous.facts.fingerprint != facts.fingerprint
            state = "updated" if changed else ("unchanged" if previous else "added")
            notes.append(f"{model.name}: {state} from {model.gguf}")
        elif previous is not None:
            models[model.name] = previous
            notes.append(f"{model.name}: kept (file absent here: {model.gguf})")
        else:
            raise ModelFileError(
                f"{model.gguf}: no such file, and no earlier lock entry for model {model.name}; "
                "run `reconcile lock` where the model files are"
            )
    return LockFile(models=models), notes


def write_lock(lock: LockFile, path: Path, header: str = HEADER) -> None:
    """Write atomically (a reader never sees half a lock file), readable like any file."""
    text = dump_yaml(lock.model_dump(mode="json"), header)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
