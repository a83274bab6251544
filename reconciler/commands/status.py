"""`reconcile status`: the GPUs, what holds their memory (ours or not), the host, our instances."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TextIO

from reconciler.levels import pressure, thermal_state
from reconciler.observe import StateReader
from reconciler.state import GpuState, Instance, ObservedState

__all__ = ["PROCESS_HEADER", "render_status", "status"]

BAR = 20


def _bar(used: int, total: int) -> str:
    filled = min(BAR, round(BAR * used / total)) if total > 0 else 0
    return "[" + "#" * filled + "." * (BAR - filled) + "]"


def _opt(value: object, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}{unit}"
    return f"{value}{unit}"


def _gpu_line(g: GpuState) -> str:
    """One GPU, each figure after its label: memory, temperature, power, utilization."""
    if g.lost:
        return f"GPU {g.label}  {g.name}  LOST: the GPU fell off the bus; check `dmesg`, reboot"
    if g.memory_total_mib > 0:
        level = pressure(g.memory_used_mib, g.memory_total_mib)
        memory = (
            f"memory {_bar(g.memory_used_mib, g.memory_total_mib)} "
            f"{g.memory_used_mib}/{g.memory_total_mib} MiB used (pressure {level})"
        )
    else:
        memory = "memory not readable"
    temp = thermal_state(g.temperature_c)
    power = f"power {_opt(g.power_w, '')}/{_opt(g.power_limit_w, '')} W"
    events = f"  clocks: {','.join(g.clock_events)}" if set(g.clock_events) - {"idle"} else ""
    return (
        f"GPU {g.label}  {g.name}  {memory}  temperature {_opt(g.temperature_c, ' C')} ({temp})"
        f"  {power}  utilization {_opt(g.utilization_pct, '%')}{events}"
    )


PROCESS_HEADER = f"    {'PID':>8}  {'KIND':<8}  {'MEMORY':>11}  PROGRAM (USER)  [OWNER]"


def _source(state: ObservedState, observed: str | None) -> str:
    """Where the state was read: the machine (NVML), a profile, or a snapshot file (and what
    that snapshot was taken from)."""
    driver = f", driver {state.driver}" if state.driver else ""
    if observed is None:
        return f"source: {state.source}{driver}"
    taken = f"taken from {state.source}{driver}"
    if state.observed_at:
        taken += f", observed {state.observed_at}"
    return f"source: snapshot {observed} ({taken})"


def _uptime(seconds: float) -> str:
    s = max(int(seconds), 0)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _instance(i: Instance, now: float) -> str:
    """One instance: state, uptime, port, GPUs, measured memory beside the estimate."""
    parts = [i.model, f"pid {i.pid}", i.state]
    if i.state == "running":
        parts.append(f"up {_uptime(now - i.start_time)}")
    if i.launch is not None and i.launch.port is not None:
        parts.append(f"port {i.launch.port}")
    parts.append(", ".join(f"GPU {g}" for g in i.gpus) or "no GPU memory")
    estimated = sum(v for k, v in (i.estimate_mib or {}).items() if k != "host")
    memory = f"{i.used_mib} MiB"
    if i.estimate_mib is not None and i.state == "running":
        memory += f" (estimated {estimated})"
    parts += [memory, f"({i.source})"]
    return "    " + "  ".join(parts)


def render_status(state: ObservedState, observed: str | None = None) -> list[str]:
    """The status table, line by line: where it was read (`observed`: the snapshot file),
    GPUs with their processes under a header, host, our instances."""
    now = time.time()
    lines = [_source(state, observed)]
    if not state.gpus:
        lines.append(state.gpu_note or "no NVIDIA GPU")
    for g in state.gpus:
        lines.append(_gpu_line(g))
        if g.processes:
            lines.append(PROCESS_HEADER)
        for p in sorted(g.processes, key=lambda p: -(p.used_mib or 0)):
            who = f"ours: {p.instance}" if p.owner == "ours" else "foreign"
            user = f" ({p.user})" if p.user else ""
            mib = "?" if p.used_mib is None else str(p.used_mib)
            lines.append(
                f"    {p.pid:>8}  {p.kind:<8}  {mib:>7} MiB  {p.name or '?'}{user}  [{who}]"
            )
    lines += [f"note: {note}" for note in state.notes]
    h = state.host
    lines.append(f"host: {h.ram_available_mib}/{h.ram_total_mib} MiB RAM available, {h.cpus} CPUs")
    if state.instances:
        lines.append("instances:")
        lines += [_instance(i, now) for i in state.instances]
    else:
        lines.append("instances: none started by the reconciler")
    return lines


def status(args: argparse.Namespace, out: TextIO) -> int:
    """`reconcile status [--json] [--observed FILE | --profile NAME]`: writes to `out` only.

    Errors a user can act on (a broken snapshot, an unknown profile, a damaged journal) are
    raised as `ReconcileError`s for the CLI to print.
    """
    state_dir = getattr(args, "state_dir", None)
    reader = StateReader(
        observed=args.observed,
        profile=args.profile,
        state_dir=Path(state_dir) if state_dir else None,
        journal=state_dir is not None,
    )
    state = reader.observe()
    if args.json:
        out.write(state.to_json() + "\n")
        return 0
    lines = render_status(state, args.observed)
    if state_dir:
        from reconciler.apply.crashes import CrashBook, looping_lines  # noqa: PLC0415

        lines += looping_lines(CrashBook(Path(state_dir)).read())
    for line in lines:
        out.write(line + "\n")
    return 0
