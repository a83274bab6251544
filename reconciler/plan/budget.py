"""How much memory our models may use on each GPU, and why a GPU may not be used at all."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.config.desired import Desired
from reconciler.levels import ThermalState, thermal_state
from reconciler.state import GpuProcess, GpuState, ObservedState

__all__ = ["GpuBudget", "gpu_budgets", "occupied"]


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
    program_mib: tuple[int | None, ...] = ()  # what each of `programs` holds (None: unsaid)
    raised: bool = False  # budget raised to what instances we keep as they are hold

    def named_in(self, refs: Sequence[int | str] | None) -> bool:
        """Whether a `pin` or `gpus` list names this GPU (by index or UUID); None names all."""
        return refs is None or any(ref in (self.index, self.uuid) for ref in refs)

    @property
    def sheds(self) -> bool:
        """Above evict_above_c: its lowest-priority model of ours stops (one per plan)."""
        return self.thermal == "critical"


def _once(gpu: GpuState) -> list[GpuProcess]:
    """Each process once (a process in both NVML lists reports the same memory twice)."""
    seen: dict[int, GpuProcess] = {}
    for p in gpu.processes:
        if p.pid not in seen or (p.used_mib or 0) > (seen[p.pid].used_mib or 0):
            seen[p.pid] = p
    return list(seen.values())


def occupied(gpu: GpuState) -> int:
    """Memory nobody else can have: total - free. NVML's v2 `used` leaves out what the driver
    reserves (v1's includes it); total - free is the same in both and counts it once."""
    if 0 <= gpu.memory_free_mib <= gpu.memory_total_mib:
        return gpu.memory_total_mib - gpu.memory_free_mib
    return gpu.memory_used_mib + (gpu.memory_reserved_mib or 0)


def _foreign(gpu: GpuState, unreported_ours: int) -> int:
    """Memory taken by programs other than ours, and what NVML cannot attribute (the driver's
    reserve included). `unreported_ours`: what our own processes hold where the driver does
    not say (WDDM, WSL), charged their estimate so that a model never yields to itself."""
    processes = _once(gpu)
    ours = sum(p.used_mib or 0 for p in processes if p.owner == "ours")
    reported = sum(p.used_mib or 0 for p in processes if p.owner == "foreign")
    unattributed = occupied(gpu) - ours - unreported_ours
    return max(reported, unattributed, 0)


def _foreign_processes(gpu: GpuState) -> list[GpuProcess]:
    """Other programs on the GPU, the largest first."""
    return sorted((p for p in _once(gpu) if p.owner == "foreign"), key=lambda p: -(p.used_mib or 0))


def _programs(gpu: GpuState) -> tuple[str, ...]:
    return tuple(
        f"{p.name or 'an unnamed program'} (pid {p.pid}"
        + (f", {p.used_mib} MiB)" if p.used_mib is not None else ")")
        for p in _foreign_processes(gpu)
    )


def _allowed(desired: Desired, gpu: GpuState) -> bool:
    if desired.gpus is None:
        return True
    return any(ref in (gpu.index, gpu.uuid) for ref in desired.gpus)


def _mig_parent(gpu: GpuState, observed: ObservedState) -> str | None:
    """Why a GPU with MIG enabled takes no model itself: only its slices do."""
    if gpu.mig is not None:
        return None
    slices = [g.label for g in observed.gpus if g.index == gpu.index and g.mig is not None]
    if slices:
        return "MIG is enabled: models go on its slices (" + ", ".join(slices) + ")"
    if gpu.mig_mode:
        return "MIG is enabled and no slice is seen: create MIG instances, or disable MIG"
    return None


def _claimed(desired: Desired, gpu: GpuState) -> str | None:
    """`foreign_processes: exclusive`: another program on the GPU (but a listed compositor
    or browser, or one holding less than `below_mib`) makes it ours no more."""
    policy = desired.policy
    if policy.foreign_processes != "exclusive":
        return None
    ignored = {name.lower() for name in policy.exclusive.ignore}
    claims = [
        p
        for p in _once(gpu)
        if p.owner == "foreign"
        and (p.name or "").lower() not in ignored
        and (p.used_mib is None or p.used_mib >= policy.exclusive.below_mib)
    ]
    if not claims:
        return None
    who = ", ".join(f"{p.name or 'an unnamed program'} (pid {p.pid})" for p in claims[:2])
    more = f" and {len(claims) - 2} more" if len(claims) > 2 else ""
    return f"left to {who}{more} (foreign_processes: exclusive)"


def gpu_budgets(
    desired: Desired, observed: ObservedState, unreported: Mapping[str, int] | None = None
) -> tuple[GpuBudget, ...]:
    """Per GPU: what our models may use. `unreported`: per GPU label, the estimate of our
    instances whose memory the driver does not report (they are ours, not foreign)."""
    out = []
    policy = desired.policy
    unreported = unreported or {}
    for gpu in observed.gpus:
        reserve = policy.headroom.reserve_for(gpu.memory_total_mib)
        foreign = _foreign(gpu, unreported.get(gpu.label, 0))
        thermal = thermal_state(gpu.temperature_c, policy.thermal)
        why = None
        if gpu.lost:
            why = "the GPU is lost (fell off the bus)"
        elif not _allowed(desired, gpu):
            why = "not in `gpus` of the desired file"
        else:
            why = _mig_parent(gpu, observed) or _claimed(desired, gpu)
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
                program_mib=tuple(p.used_mib for p in _foreign_processes(gpu)),
            )
        )
    return tuple(out)
