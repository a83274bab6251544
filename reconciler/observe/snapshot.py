"""Observed states that come from files: snapshots (`--observed`) and hardware profiles.

A snapshot is what `reconcile status --json` prints; it reads back unchanged. JSON is read by
the JSON parser (a syntax error points at its line and column); anything else is read as YAML.
A snapshot is data, not configuration: `${...}` in it (a command line, say) is kept as written,
never expanded. Problems are raised as `ConfigErrors`, each at its `file:line:col`.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reconciler.config.messages import translate
from reconciler.config.profile import Profile
from reconciler.config.source import Source, format_loc
from reconciler.config.yamlfile import parse_yaml, read_text
from reconciler.errors import ConfigError, ConfigErrors
from reconciler.observe.jsontext import deepest, json_positions, token_place
from reconciler.observe.sanity import snapshot_problems, text_problems
from reconciler.state import GpuProcess, GpuState, HostState, ObservedState

__all__ = ["from_profile", "load_snapshot"]

PROFILE_PID_BASE = 1_000_000  # pids of a profile's baseline programs: beyond any real pid
MAX_DIGITS = 20  # a snapshot's largest figure (a start time in microseconds) has 16
MAX_YAML_CHARS = 256 * 1024  # the YAML reader takes seconds per MiB; JSON may have 4 MiB
MAX_ERRORS = 50  # problems shown; the rest are counted
MAX_DEPTH = 32  # JSON nesting: a snapshot has 6 levels (instances[].launch.env.KEY)


def from_profile(profile: Profile, name: str) -> ObservedState:
    """An idle machine as the profile describes it: its baseline programs, nothing of ours."""
    gpus = []
    for index, gpu in enumerate(profile.gpus):
        processes = tuple(
            GpuProcess(
                pid=PROFILE_PID_BASE + 100 * index + j,
                used_mib=p.used_mib,
                kind=p.type,
                name=p.name,
                owner="foreign",
            )
            for j, p in enumerate(gpu.baseline)
        )
        used = gpu.baseline_mib
        gpus.append(
            GpuState(
                index=index,
                uuid=gpu.uuid or f"GPU-profile-{name}-{index}",
                name=gpu.name,
                memory_total_mib=gpu.memory_mib,
                memory_used_mib=used,
                memory_free_mib=gpu.memory_mib - used,
                compute_capability=gpu.compute_capability,
                processes=processes,
            )
        )
    note = None if gpus else f"no NVIDIA GPU in profile {name}"
    host = HostState(
        ram_total_mib=profile.host.ram_mib,
        ram_available_mib=profile.host.ram_mib,
        cpus=profile.host.cpus,
    )
    return ObservedState(source=f"profile:{name}", gpus=tuple(gpus), host=host, gpu_note=note)


def load_snapshot(path: str | os.PathLike[str]) -> ObservedState:
    """An ObservedState saved by `reconcile status --json` (JSON or YAML), errors located;
    one that no machine can produce is refused (`sanity.snapshot_problems`)."""
    file = os.fspath(path)
    try:
        return _load(file)
    except ConfigErrors as exc:
        rerun = f"reconcile status --observed {shlex.quote(file)}"
        raise ConfigErrors(exc.errors, rerun=rerun, about="snapshot") from None


def _load(file: str) -> ObservedState:
    text = read_text(Path(file), file, "a snapshot file")
    if text.lstrip().startswith("{"):
        data = _parse_json(text, file)
        source = None
    elif len(text) > MAX_YAML_CHARS:
        message = (
            f"a snapshot written as YAML is at most {MAX_YAML_CHARS // 1024} KiB (this one has "
            f"{len(text) // 1024} KiB); write it as JSON, as `reconcile status --json` does"
        )
        raise ConfigErrors([ConfigError(file, 0, 0, "", message)])
    else:
        source = _parse_yaml(text, file)
        data = source.data
    if data is None:
        raise ConfigErrors([ConfigError(file, 1, 1, "", "the snapshot is empty")])
    problems = text_problems(data)
    if problems:
        where = source or Source(file, data, json_positions(text, [loc for loc, _ in problems]))
        raise ConfigErrors([where.error(loc, message) for loc, message in problems])
    try:
        state = ObservedState.model_validate(data)
    except ValidationError as exc:
        raise ConfigErrors(_located(exc, file, text, source, data)) from None
    problems = snapshot_problems(state)
    if problems:
        where = source or Source(file, data, json_positions(text, [loc for loc, _ in problems]))
        raise ConfigErrors([where.error(loc, message) for loc, message in problems])
    return state


def _located(
    exc: ValidationError, file: str, text: str, source: Source | None, data: Any
) -> list[ConfigError]:
    """The first `MAX_ERRORS` of `exc`, each at its place, then how many more: a file with a
    million wrong values is not worth a million lines (nor the seconds to place them)."""
    wanted = [tuple(e["loc"]) for e in exc.errors(include_url=False)[: MAX_ERRORS + 1]]
    where = source or Source(file, data, json_positions(text, wanted))
    return translate(exc, where, ObservedState, most=MAX_ERRORS)


class _Unreadable(ValueError):
    """A JSON number or constant that describes no machine; `token` is how it is written."""

    def __init__(self, token: str, message: str) -> None:
        super().__init__(message)
        self.token = token
        self.message = message


def _int(token: str) -> int:
    if len(token.lstrip("-")) > MAX_DIGITS:
        message = f"a number of {len(token.lstrip('-'))} digits; no value in a snapshot has "
        raise _Unreadable(token, message + f"more than {MAX_DIGITS}")
    return int(token)


def _float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise _Unreadable(token, f"{token} is too large a number for any value in a snapshot")
    return value


def _constant(token: str) -> float:
    raise _Unreadable(token, f"{token} is not JSON; write null where a value is unknown")


def _parse_json(text: str, file: str) -> Any:
    try:
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        error = ConfigError(file, exc.lineno, exc.colno, "", f"JSON syntax error: {exc.msg}")
    except _Unreadable as exc:
        line, col, loc = token_place(text, exc.token)
        error = ConfigError(file, line, col, format_loc(loc or ()), exc.message)
    except RecursionError:
        line, col = deepest(text, MAX_DEPTH)
        message = f"nested deeper than {MAX_DEPTH} levels; a snapshot has 5"
        error = ConfigError(file, line, col, "", message)
    raise ConfigErrors([error])


def _literal(text: str) -> str:
    """The text with every `${` escaped, so that the YAML reader expands nothing."""
    return text.replace("${", "$${")


def _parse_yaml(text: str, file: str) -> Source:
    source = parse_yaml(_literal(text), file)
    if source.errors:
        raise ConfigErrors(source.errors)
    return source
