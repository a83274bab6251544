"""Observed states that come from files: snapshots (`--observed`) and hardware profiles."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from reconciler.errors import ConfigError, ConfigErrors
from reconciler.observe.state import GpuProcess, GpuState, HostState, ObservedState
from reconciler.spec.messages import translate
from reconciler.spec.profile import Profile
from reconciler.spec.yamlfile import read_yaml

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
    source = read_yaml(Path(path))
    if source.errors:
        raise ConfigErrors(source.errors)
    if source.data is None:
        raise ConfigErrors([ConfigError(source.file, 1, 1, "", "the snapshot is empty")])
    try:
        return ObservedState.model_validate(source.data)
    except ValidationError as exc:
        raise ConfigErrors(translate(exc, source, ObservedState)) from None
