"""How much memory our models may use on each GPU, and why a GPU may not be used at all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.config.desired import Desired
from reconciler.levels import ThermalState, thermal_state
from reconciler.state import GpuState, ObservedState

__all__ = ["GpuBudget", "gpu_budgets"]


@dataclass(frozen=True)
class GpuBudget:
    label: str  # "0", "0/mig1"
    index: int
    uuid: str
    name: str
    total_mib: int
    reserve_mib: int  # headroom: never used
    foreign_mib: int  # held by other programs
    budget_mib: int  # what our models may use: total - reserve - foreign
    thermal: ThermalState
    usable: bool  # may hold our models at all
    startable: bool  # may take new starts (not above shed_above_c)
    why_not: str | None = None  # why it is not usable
    too_hot: str | None = None  # why it takes no new start, or sheds a model
    programs: tuple[str, ...] = ()  # the other programs holding memory: "game (pid 7, 9 MiB)"

    def named_in(self, refs: Sequence[int | str] | None) -> bool:
        """Whether a `pin` or `gpus` list names this GPU (by index or UUID); None names all."""
        return refs is None or any(ref in (self.index, self.uuid) for ref in refs)

    @property
    def sheds(self) -> bool:
        """Above evict_above_c: its lowest-priority model of ours stops (one per plan)."""
        return self.thermal == "critical"


def _foreign(gpu: GpuState) -> int:
    """Memory physically taken by programs other than ours (also what NVML cannot attribute)."""
    ours = sum(p.used_mib or 0 for p in gpu.processes if p.owner == "ours")
    reported = sum(p.used_mib or 0 for p in gpu.processes if p.owner == "foreign")
    unattributed = gpu.memory_used_mib - (gpu.memory_reserved_mib or 0) - ours
    return max(reported, unattributed, 0)


def _programs(gpu: GpuState) -> tuple[str, ...]:
    foreign = sorted(
        (p for p in gpu.processes if p.owner == "foreign"), key=lambda p: -(p.used_mib or 0)
    )
    return tuple(
        f"{p.name or 'an unnamed program'} (pid {p.pid}"
        + (f", {p.used_mib} MiB)" if p.used_mib is not None else ")")
        for p in foreign
    )


def _allowed(desired: Desired, gpu: GpuState) -> bool:
    if desired.gpus is None:
        return True
    return any(ref in (gpu.index, gpu.uuid) for ref in desired.gpus)


def gpu_budgets(desired: Desired, observed: ObservedState) -> tuple[GpuBudget, ...]:
    out = []
    policy = desired.policy
    for gpu in observed.gpus:
        reserve = policy.headroom.reserve_for(gpu.memory_total_mib)
        foreign = _foreign(gpu)
        thermal = thermal_state(gpu.temperature_c, policy.thermal)
        why = None
        if gpu.lost:
            why = "the GPU is lost (fell off the bus)"
        elif not _allowed(desired, gpu):
            why = "not in `gpus` of the desired file"
        hot = None
        if thermal == "critical":
            gate = policy.thermal.evict_above_c
            hot = f"too hot: {gpu.temperature_c} C >= evict_above_c {gate}"
        elif thermal == "throttling":
            hot = f"too hot for new starts: {gpu.temperature_c} C >= shed_above_c"
            hot += f" {policy.thermal.shed_above_c}"
        budget = max(gpu.memory_total_mib - reserve - foreign, 0)
        out.append(
            GpuBudget(
                label=gpu.label,
                index=gpu.index,
                uuid=gpu.uuid,
                name=gpu.name,
                total_mib=gpu.memory_total_mib,
                reserve_mib=reserve,
                foreign_mib=foreign,
                budget_mib=budget if why is None else 0,
                thermal=thermal,
                usable=why is None,
                startable=why is None and hot is None,
                why_not=why,
                too_hot=hot,
                programs=_programs(gpu),
            )
        )
    return tuple(out)
