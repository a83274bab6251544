"""Carrying a plan out on a simulated machine: what the applier will do, as the next
observation will see it. Stops and restarts end the old process; starts, restarts and moves
start a new one with the action's resolved launch; keeps leave the process as it is. Each new
process holds on each GPU what the plan estimated (times `measured`, to play a driver that
reports more or less), and the journal records its launch and estimate."""

from __future__ import annotations

from reconciler.plan.model import Plan
from reconciler.state import GpuProcess, GpuState, Instance, ObservedState

__all__ = ["carry_out"]


def _without(gpu: GpuState, pid: int, held: int) -> GpuState:
    """`gpu` without process `pid`, which held `held` MiB there (also where the driver did
    not report it)."""
    gone = [p for p in gpu.processes if p.pid == pid]
    freed = held if gone else 0
    return gpu.model_copy(
        update={
            "processes": tuple(p for p in gpu.processes if p.pid != pid),
            "memory_used_mib": gpu.memory_used_mib - freed,
            "memory_free_mib": gpu.memory_free_mib + freed,
        }
    )


def _held(gpu: GpuState, pid: int, inst: Instance | None, label: str) -> int:
    """What process `pid` holds on `gpu`: what the driver reports, else (unreported) what
    it was started to hold, its estimate."""
    reported = [p.used_mib for p in gpu.processes if p.pid == pid and p.used_mib is not None]
    if reported:
        return sum(reported)
    estimate = inst.estimate_mib if inst is not None and inst.estimate_mib else {}
    return estimate.get(label, 0)


def carry_out(
    plan: Plan, observed: ObservedState, *, measured: float = 1.0, unreported: bool = False
) -> ObservedState:
    """The machine once `plan` is carried out. `unreported`: the driver gives no memory per
    process (WDDM, WSL), as `used_mib=None`; the memory is still used on the GPU."""
    assert not (unreported and measured != 1.0), "an unreported process holds its estimate"
    gpus = {g.label: g for g in observed.gpus}
    instances = {i.pid: i for i in observed.instances}
    next_pid = max([*instances, 4999]) + 1
    for a in plan.actions:
        if a.action in ("stop", "restart", "move") and a.instance is not None:
            assert a.instance.known_by == "journal", f"{a.model}: signalled a process not ours"
            inst = instances.pop(a.instance.pid, None)
            for label in list(gpus):
                held = _held(gpus[label], a.instance.pid, inst, label)
                gpus[label] = _without(gpus[label], a.instance.pid, held)
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
            gpus[label] = gpus[label].with_process(proc, mib)
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
