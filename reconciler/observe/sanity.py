"""What a snapshot claims, checked against what a machine can be.

A snapshot is written by `reconcile status --json`, by hand or by a simulation; one that no
machine can produce (the same GPU twice, more memory used than the card has, a negative total)
would be planned against as if it were true, and start two models on one card. Each problem
is named at its key, so that the file can be fixed; the bounds are those of real machines
(`reconciler.config.profile.MAX_*`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

from reconciler.config.profile import MAX_CPUS, MAX_GPU_MIB, MAX_GPUS, MAX_HOST_MIB, number
from reconciler.config.source import Loc
from reconciler.state import GpuProcess, GpuState, HostState, Instance, ObservedState

__all__ = [
    "MAX_ENTRIES",
    "MAX_INSTANCES",
    "MAX_MIG",
    "MAX_PID",
    "MAX_POWER_W",
    "MAX_PROCESSES",
    "MAX_TEMPERATURE_C",
    "MAX_TEXT",
    "snapshot_problems",
    "text_problems",
]

MAX_PROCESSES = 1024  # per GPU
MAX_INSTANCES = 1024
MAX_MIG = 7  # an NVIDIA GPU has at most 7 MIG slices, numbered 0 to 6
MAX_ENTRIES = MAX_GPUS * (MAX_MIG + 1)  # GPUs and their MIG slices
MAX_PID = 1 << 22  # Linux's PID_MAX_LIMIT
MAX_TEMPERATURE_C = 150
MAX_POWER_W = 10_000  # the largest boards draw about 1.5 kW
MAX_START_TIME = 1e11  # seconds since 1970: the year 5138
MAX_TEXT = 4096  # characters in one string; a long command line has a few hundred
MAX_NOTES = 256  # an observation writes a few

Problem = tuple[Loc, str]
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab and newline
MIB = "a whole number of MiB"


def _range(
    loc: Loc, value: float | None, low: float, high: float, what: str, *, why: str = ""
) -> Iterator[Problem]:
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        yield loc, f"must be {what} from {low} to {high}, got {value}"
    elif not low <= value <= high:
        yield loc, f"must be {what} from {number(low)} to {number(high)}{why}, got {number(value)}"


def text_problems(data: Any) -> list[Problem]:
    """Every string of the raw (parsed, not yet validated) snapshot that cannot be printed or
    written back as JSON, each at its key, and a `notes` list longer than an observation writes.
    Iterative: a deep file ends in no RecursionError."""
    out: list[Problem] = []
    notes = data.get("notes") if isinstance(data, dict) else None
    if isinstance(notes, list) and len(notes) > MAX_NOTES:
        return [(("notes",), f"at most {MAX_NOTES} notes; this snapshot has {len(notes)}")]
    stack: list[tuple[Loc, Any]] = [((), data)]
    while stack:
        at, value = stack.pop()
        if isinstance(value, str):
            problem = _text(value)
            if problem:
                out.append((at, problem))
        elif isinstance(value, dict):
            children: list[tuple[Loc, Any]] = []
            for key, item in value.items():
                problem = _text(key) if isinstance(key, str) else None
                if problem:
                    out.append((at, f"a key {_shown(key)}: {problem}"))
                else:
                    children.append(((*at, key), item))
            stack += reversed(children)
        elif isinstance(value, list):
            stack += reversed([((*at, i), item) for i, item in enumerate(value)])
    return out


def _text(value: str) -> str | None:
    if len(value) > MAX_TEXT:
        return f"at most {MAX_TEXT} characters; this text has {len(value)}"
    if _SURROGATE.search(value):
        return "not valid Unicode (a lone surrogate)"
    control = _CONTROL.search(value)
    if control:
        return f"a control character (U+{ord(control.group()):04X}) where text is expected"
    return None


def _shown(key: str) -> str:
    return ascii(key[:40])


def snapshot_problems(state: ObservedState) -> list[Problem]:
    """Every claim of `state` that no machine can make, each at its key."""
    out: list[Problem] = []
    if len(state.gpus) > MAX_ENTRIES:
        out.append(
            (
                ("gpus",),
                f"at most {MAX_ENTRIES} GPUs and MIG slices ({MAX_GPUS} GPUs of {MAX_MIG} slices "
                f"each: no real machine has more); this snapshot has {len(state.gpus)}",
            )
        )
        return out
    if len(state.instances) > MAX_INSTANCES:
        message = f"at most {MAX_INSTANCES} instances; this snapshot has {len(state.instances)}"
        out.append((("instances",), message))
        return out
    labels: dict[str, int] = {}
    uuids: dict[str, int] = {}
    for i, gpu in enumerate(state.gpus):
        at: Loc = ("gpus", i)
        if gpu.label in labels:
            message = f"GPU {gpu.label} is listed twice (also gpus[{labels[gpu.label]}])"
            out.append(((*at, "index"), message))
        labels.setdefault(gpu.label, i)
        if gpu.uuid in uuids:
            message = f'UUID "{gpu.uuid}" is listed twice (also gpus[{uuids[gpu.uuid]}])'
            out.append(((*at, "uuid"), message))
        uuids.setdefault(gpu.uuid, i)
        out += _gpu(at, gpu)
    out += _host(state.host)
    running: dict[int, int] = {}  # a pid is one running process; a gone one's pid may be reused
    for i, instance in enumerate(state.instances):
        if instance.state == "running" and instance.pid in running:
            message = f"listed twice (also instances[{running[instance.pid]}])"
            out.append((("instances", i, "pid"), message))
        if instance.state == "running":
            running.setdefault(instance.pid, i)
        out += _instance(("instances", i), instance, set(labels))
    return out


def _gpu(at: Loc, gpu: GpuState) -> Iterator[Problem]:
    yield from _range((*at, "index"), gpu.index, 0, MAX_GPUS - 1, "a GPU index")
    yield from _range((*at, "mig"), gpu.mig, 0, MAX_MIG - 1, "a MIG slice index")
    total = gpu.memory_total_mib
    why = " (1 TiB: no GPU has more)"
    bad_total = list(_range((*at, "memory_total_mib"), total, 0, MAX_GPU_MIB, MIB, why=why))
    yield from bad_total
    if bad_total:
        total = MAX_GPU_MIB
    for key in ("memory_used_mib", "memory_free_mib", "memory_reserved_mib"):
        value = getattr(gpu, key)
        yield from _range((*at, key), value, 0, total, MIB, why=" (memory_total_mib)")
    parts = gpu.memory_used_mib + gpu.memory_free_mib + (gpu.memory_reserved_mib or 0)
    if (
        not bad_total
        and 0 <= gpu.memory_used_mib <= total
        and gpu.memory_free_mib >= 0
        and (parts > total)
    ):
        yield (
            (*at, "memory_free_mib"),
            f"used {gpu.memory_used_mib} + free {gpu.memory_free_mib}"
            + (f" + reserved {gpu.memory_reserved_mib}" if gpu.memory_reserved_mib else "")
            + f" MiB is more than the {total} MiB total",
        )
    yield from _range((*at, "utilization_pct"), gpu.utilization_pct, 0, 100, "a percentage")
    yield from _range(
        (*at, "temperature_c"), gpu.temperature_c, 0, MAX_TEMPERATURE_C, "degrees Celsius"
    )
    yield from _range((*at, "power_w"), gpu.power_w, 0, MAX_POWER_W, "watts")
    yield from _range((*at, "power_limit_w"), gpu.power_limit_w, 0, MAX_POWER_W, "watts")
    if len(gpu.processes) > MAX_PROCESSES:
        yield (
            (*at, "processes"),
            f"at most {MAX_PROCESSES} processes per GPU; this one lists {len(gpu.processes)}",
        )
        return
    yield from _processes(at, gpu, total)


def _processes(at: Loc, gpu: GpuState, total: int) -> Iterator[Problem]:
    """Each process's pid and memory; together (each pid once: a process in both NVML lists
    reports its whole use twice) they hold no more than the GPU has."""
    most = total if total > 0 else MAX_GPU_MIB  # 0: the driver did not say
    held: dict[int, int] = {}
    for j, p in enumerate(gpu.processes):
        where = (*at, "processes", j)
        yield from _range((*where, "pid"), p.pid, 0, MAX_PID, "a process id")
        yield from _range((*where, "used_mib"), p.used_mib, 0, most, MIB, why=_of(total))
        if p.owner == "ours" and p.instance is None:
            yield (*where, "instance"), 'a process marked "ours" names its instance (the model)'
        held[p.pid] = max(held.get(p.pid, 0), _mib(p))
    if total > 0 and sum(held.values()) > total:
        yield (
            (*at, "processes"),
            f"these processes hold {sum(held.values())} MiB, more than the GPU's {total} MiB",
        )


def _of(total: int) -> str:
    return " (memory_total_mib)" if total > 0 else ""


def _mib(p: GpuProcess) -> int:
    return p.used_mib if p.used_mib is not None and 0 <= p.used_mib <= MAX_GPU_MIB else 0


def _host(host: HostState) -> Iterator[Problem]:
    at: Loc = ("host",)
    bad = list(_range((*at, "ram_total_mib"), host.ram_total_mib, 0, MAX_HOST_MIB, MIB))
    yield from bad
    most = MAX_HOST_MIB if bad else host.ram_total_mib
    yield from _range(
        (*at, "ram_available_mib"), host.ram_available_mib, 0, most, MIB, why=" (ram_total_mib)"
    )
    yield from _range((*at, "cpus"), host.cpus, 1, MAX_CPUS, "a number of logical CPUs")


def _instance(at: Loc, instance: Instance, labels: set[str]) -> Iterator[Problem]:
    yield from _range((*at, "pid"), instance.pid, 1, MAX_PID, "a process id")
    yield from _range(
        (*at, "start_time"), instance.start_time, 0, MAX_START_TIME, "seconds since 1970"
    )
    yield from _range((*at, "used_mib"), instance.used_mib, 0, MAX_GPU_MIB * MAX_GPUS, MIB)
    for j, label in enumerate(instance.gpus):
        if label not in labels:
            yield (*at, "gpus", j), f'no GPU "{label}" in this snapshot'
    for label, mib in instance.used_by_gpu.items():
        if label not in labels:
            yield (*at, "used_by_gpu", label), f'no GPU "{label}" in this snapshot'
        yield from _range((*at, "used_by_gpu", label), mib, 0, MAX_GPU_MIB, MIB)
    for label, mib in (instance.estimate_mib or {}).items():
        if label != "host" and label not in labels:
            message = f'no GPU "{label}" in this snapshot (nor "host")'
            yield (*at, "estimate_mib", label), message
        most = MAX_HOST_MIB if label == "host" else MAX_GPU_MIB
        yield from _range((*at, "estimate_mib", label), mib, 0, most, MIB)
