"""Saved plans (`reconcile plan -o FILE`): written whole or not at all, read back as a `Plan`.

A saved plan is the `Plan` model as JSON (`plan_json`) and loads back unchanged. Reading one
reports a missing file, invalid JSON (at its line and column), a plan of another format or a
damaged one each in one line, as a `ConfigError`.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from pydantic import ValidationError

from reconciler.atomicfile import write_atomically
from reconciler.config.source import format_loc
from reconciler.config.yamlfile import decode_text, read_bytes
from reconciler.errors import ConfigError, ConfigErrors, ReconcileError
from reconciler.plan.model import Plan
from reconciler.plan.views import plan_json

__all__ = ["MAX_PLAN_BYTES", "load_saved_plan", "plan_target", "save_plan"]

MAX_PLAN_BYTES = 64 * 1024 * 1024  # a plan of 1000 models is a few MiB
FORMAT_VERSION = 2


def _stat(path: Path, target: Path) -> os.stat_result | None:
    """`path`'s status; None where there is nothing (or a file where a folder should be)."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise ReconcileError(
            f"{target}: cannot save the plan there: {exc.strerror or exc}; choose another path"
        ) from None


def plan_target(path: str | os.PathLike[str]) -> Path:
    """Where a plan will be saved, refused before any work when it cannot be: a folder, a
    file in a folder that does not exist, a path the system refuses (too long, a loop)."""
    target = Path(path)
    found = _stat(target, target)
    if found is not None and stat.S_ISDIR(found.st_mode):
        raise ReconcileError(
            f"{target}: is a directory; give the plan a file name, e.g. -o {target / 'plan.json'}"
        )
    parent = target.parent
    folder = _stat(parent, target)
    if folder is None or not stat.S_ISDIR(folder.st_mode):
        what = (
            f"the folder {parent} does not exist" if folder is None else f"{parent} is not a folder"
        )
        raise ReconcileError(
            f"{target}: cannot save the plan there: {what}; create it or choose another path"
        )
    return target


def save_plan(plan: Plan, path: str | os.PathLike[str]) -> Path:
    """Write the plan atomically (a reader never sees half of it), readable like any file.
    A target that exists and is not a regular file (`/dev/stdout`, a pipe) is written in
    place: it cannot be replaced."""
    target = plan_target(path)
    text = plan_json(plan) + "\n"
    found = _stat(target, target)
    try:
        if found is not None and not stat.S_ISREG(found.st_mode):
            with open(target, "w", encoding="utf-8") as handle:
                handle.write(text)
        else:
            write_atomically(target, text)
    except OSError as exc:
        raise ReconcileError(
            f"{target}: cannot save the plan: {exc.strerror or exc}; choose another path"
        ) from None
    return target


def load_saved_plan(path: str | os.PathLike[str]) -> Plan:
    """A plan saved by `reconcile plan -o`; every problem as one `ConfigError` line."""
    file = os.fspath(path)
    again = f"run `reconcile plan -o {file}` again"
    try:
        text = decode_text(read_bytes(file, file, "a saved plan", MAX_PLAN_BYTES), file)
    except ConfigErrors as exc:
        raise exc.errors[0] from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            file,
            exc.lineno,
            exc.colno,
            "",
            f"not a saved plan: JSON syntax error: {exc.msg}; {again}",
        ) from None
    if not isinstance(data, dict) or "format_version" not in data:
        raise ConfigError(
            file, 1, 1, "", f"not a saved plan (it has no format_version); save one: {again}"
        )
    version = data["format_version"]
    if version != FORMAT_VERSION:
        raise ConfigError(
            file,
            0,
            0,
            "format_version",
            f"a plan of format {json.dumps(version)}; this reconcile reads format "
            f"{FORMAT_VERSION}; {again}",
        )
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        message = first["msg"][:1].lower() + first["msg"][1:]
        raise ConfigError(
            file,
            0,
            0,
            format_loc(first["loc"]),
            f"the saved plan is damaged: {message}{more}; {again}",
        ) from None
