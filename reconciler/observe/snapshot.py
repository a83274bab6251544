"""Observed states that come from files: snapshots (`--observed`) and hardware profiles.

A snapshot is what `reconcile status --json` prints; it reads back unchanged. JSON is read by
the JSON parser (a syntax error points at its line and column); anything else is read as YAML.
A snapshot is data, not configuration: `${...}` in it (a command line, say) is kept as written,
never expanded. Problems are raised as `ConfigErrors`, each at its `file:line:col`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reconciler.config.messages import translate
from reconciler.config.profile import Profile
from reconciler.config.source import Source
from reconciler.config.yamlfile import parse_yaml, read_text
from reconciler.errors import ConfigError, ConfigErrors
from reconciler.state import GpuProcess, GpuState, HostState, ObservedState

__all__ = ["from_profile", "load_snapshot"]

PROFILE_PID_BASE = 1_000_000  # pids of a profile's baseline programs: beyond any real pid


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
    """An ObservedState saved by `reconcile status --json` (JSON or YAML), errors located."""
    file = os.fspath(path)
    text = read_text(Path(path), file, "a snapshot file")
    data = _parse_json(text, file) if text.lstrip().startswith("{") else _parse_yaml(text, file)
    if data is None:
        raise ConfigErrors([ConfigError(file, 1, 1, "", "the snapshot is empty")])
    try:
        return ObservedState.model_validate(data)
    except ValidationError as exc:
        raise ConfigErrors(translate(exc, _positions(text, file, data), ObservedState)) from None


def _parse_json(text: str, file: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        error = ConfigError(file, exc.lineno, exc.colno, "", f"JSON syntax error: {exc.msg}")
        raise ConfigErrors([error]) from None


def _literal(text: str) -> str:
    """The text with every `${` escaped, so that the YAML reader expands nothing."""
    return text.replace("${", "$${")


def _parse_yaml(text: str, file: str) -> Any:
    source = parse_yaml(_literal(text), file)
    if source.errors:
        raise ConfigErrors(source.errors)
    return source.data


def _positions(text: str, file: str, data: Any) -> Source:
    """Where each value is, to locate validation errors (JSON is YAML too)."""
    try:
        return parse_yaml(_literal(text), file)
    except ConfigErrors:  # JSON that YAML does not take: errors are placed at 1:1
        return Source(file, data)
