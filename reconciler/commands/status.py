"""`reconcile status`: the GPUs, what holds their memory (ours or not), the host, our instances."""

from __future__ import annotations

import argparse
from typing import TextIO

from reconciler.levels import pressure, thermal_state
from reconciler.observe import observe
from reconciler.state import GpuState, ObservedState

__all__ = ["render_status", "status"]

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
    if g.lost:
        return f"GPU {g.label}  {g.name}  LOST: the GPU fell off the bus; check `dmesg`, reboot"
    if g.memory_total_mib > 0:
        level = pressure(g.memory_used_mib, g.memory_total_mib)
        memory = (
            f"{_bar(g.memory_used_mib, g.memory_total_mib)} "
            f"{g.memory_used_mib}/{g.memory_total_mib} MiB ({level})"
        )
    else:
        memory = "memory not readable"
    temp = thermal_state(g.temperature_c)
    power = f"{_opt(g.power_w, '')}/{_opt(g.power_limit_w, ' W')}"
    events = f"  clocks: {','.join(g.clock_events)}" if set(g.clock_events) - {"idle"} else ""
    return (
        f"GPU {g.label}  {g.name}  {memory}  "
        f"{_opt(g.temperature_c, ' C')} ({temp})  {power}  util {_opt(g.utilization_pct, '%')}"
        f"{events}"
    )


def render_status(state: ObservedState) -> list[str]:
    """The status table, line by line: GPUs with their processes, host, our instances."""
    lines = [f"source: {state.source}" + (f", driver {state.driver}" if state.driver else "")]
    if not state.gpus:
        lines.append(state.gpu_note or "no NVIDIA GPU")
    for g in state.gpus:
        lines.append(_gpu_line(g))
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
        for i in state.instances:
            where = ", ".join(f"GPU {g}" for g in i.gpus) or "no GPU memory"
            lines.append(
                f"    {i.model}  pid {i.pid}  {i.state}  {where}  {i.used_mib} MiB  ({i.source})"
            )
    else:
        lines.append("instances: none started by the reconciler")
    return lines


def status(args: argparse.Namespace, out: TextIO) -> int:
    """`reconcile status [--json] [--observed FILE | --profile NAME]`: writes to `out` only.

    Errors a user can act on (a broken snapshot, an unknown profile, a damaged journal) are
    raised as `ReconcileError`s for the CLI to print.
    """
    state = observe(observed=args.observed, profile=args.profile)
    if args.json:
        out.write(state.to_json() + "\n")
        return 0
    for line in render_status(state):
        out.write(line + "\n")
    return 0
