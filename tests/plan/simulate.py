"""Carrying a plan out on a simulated machine: what the applier will do, as the next
observation will see it. Stops and restarts end the old process; starts, restarts and moves
start a new one with the action's resolved launch; keeps leave the process as it is. Each new
process holds on each GPU what the plan estimated (times `measured`, to play a driver that
reports more or less), and the journal records its launch and estimate."""

from __future__ import annotations

from reconciler.plan.model import Plan
from reconciler.state import GpuProcess, GpuState, Instance, ObservedState

__all__ = ["carry_out"]


def _without(gpu: GpuState, pid: int) -> GpuState:
    gone = [p for p in gpu.processes if p.pid == pid]
    freed = sum(p.used_mib or 0 for p in gone)
    return gpu.model_copy(
        update={
            "processes": tuple(p for p in gpu.processes if p.pid != pid),
            "memory_used_mib": gpu.memory_used_mib - freed,
            "memory_free_mib": gpu.memory_free_mib + freed,
        }
    )


def _with(gpu: GpuState, proc: GpuProcess) -> GpuState:
    mib = proc.used_mib or 0
    return gpu.model_copy(
        update={
            "processes": (*gpu.processes, proc),
            "memory_used_mib": gpu.memory_used_mib + mib,
            "memory_free_mib": gpu.memory_free_mib - mib,
        }
    )


def carry_out(
    plan: Plan, observed: ObservedState, *, measured: float = 1.0, unreported: bool = False
) -> ObservedState:
    """The machine once `plan` is carried out. `unreported`: the driver gives no memory per
    process (WDDM, WSL), as `used_mib=None`."""
    gpus = {g.label: g for g in observed.gpus}
    instances = {i.pid: i for i in observed.instances}
    next_pid = max([*instances, 4999]) + 1
    for a in plan.actions:
        if a.action in ("stop", "restart", "move") and a.instance is not None:
            assert a.instance.known_by == "journal", f"{a.model}: signalled a process not ours"
            instances.pop(a.instance.pid, None)
            for label in list(gpus):
                gpus[label] = _without(gpus[label], a.instance.pid)
        if a.action not in ("start", "restart", "move"):
            continue
        assert a.launch is not None, f"{a.model}: {a.action} without a resolved launch"
        pid, next_pid = next_pid, next_pid + 1
        used = {}
        for label in a.launch.gpus:
            mib = int(a.estimate_mib[label] * measured)
            used[label] = mib
            proc = GpuProcess(
                pid=pid,
                used_mib=None if unreported else mib,
                kind="compute",
                owner="ours",
                instance=a.variant,
            )
            gpus[label] = _with(gpus[label], proc)
        instances[pid] = Instance(
            model=a.variant or a.model,
            pid=pid,
            start_time=float(pid),
            unit=f"reconciler-{a.model}",
            gpus=a.launch.gpus,
            used_mib=sum(used.values()),
            used_by_gpu={} if unreported else used,
            launch=a.launch,
            estimate_mib=dict(a.estimate_mib),
        )
    return observed.model_copy(
        update={"gpus": tuple(gpus.values()), "instances": tuple(instances.values())}
    )
