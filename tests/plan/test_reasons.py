"""Reasons on machines the scenario files do not describe: memory no process accounts for,
and many programs holding one GPU."""

from __future__ import annotations

from reconciler.plan.planner import make_plan
from reconciler.state import GpuProcess, GpuState, HostState, ObservedState
from tests.plan.test_properties import desired_of


def _machine(used_mib: int, processes: list[tuple[str, int]]) -> ObservedState:
    gpu = GpuState(
        index=0,
        uuid="GPU-0",
        name="GPU",
        memory_total_mib=24576,
        memory_used_mib=used_mib,
        memory_free_mib=24576 - used_mib,
        processes=tuple(
            GpuProcess(pid=700 + k, used_mib=mib, kind="graphics", name=name)
            for k, (name, mib) in enumerate(processes)
        ),
    )
    host = HostState(ram_total_mib=65536, ram_available_mib=60000, cpus=8)
    return ObservedState(source="test", gpus=(gpu,), host=host)


def test_memory_no_process_accounts_for_is_named_as_such() -> None:
    """NVML shows 5000 MiB used and a game holding 3000: the other 2000 are the driver's or a
    process it does not list, and the reason says so rather than inventing a program."""
    desired = desired_of([{"vram_mib": 12000, "priority": 1}, {"vram_mib": 9000}])
    plan = make_plan(desired, _machine(5000, [("game", 3000)]), {})
    blocked = next(a for a in plan.actions if a.action == "blocked")
    assert blocked.reason == (
        "needs 9000 MiB; GPU 0 has 5118 MiB left after m0 (priority 1, 12000 MiB) and "
        "1 other program and memory NVML attributes to no process (5000 MiB)"
    )


def test_many_programs_on_one_gpu_are_counted_not_listed() -> None:
    """Forty small programs and a large one: the large one is named (with the model of ours
    it explains what the model lacks), the others are counted with what they hold together."""
    programs = [("render", 9000)] + [(f"tool{k}", 50) for k in range(40)]
    desired = desired_of([{"vram_mib": 5000, "priority": 1}, {"vram_mib": 9000}])
    plan = make_plan(desired, _machine(13000, programs), {})
    blocked = next(a for a in plan.actions if a.action == "blocked")
    assert blocked.reason == (
        "needs 9000 MiB; GPU 0 has 4118 MiB left after render (pid 700, 9000 MiB), "
        "m0 (priority 1, 5000 MiB) and 40 other programs and memory NVML attributes to no "
        "process (4000 MiB)"
    )
