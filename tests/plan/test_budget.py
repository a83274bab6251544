"""Memory counted once and correctly: what each GPU offers our models."""

from __future__ import annotations

from reconciler.config.desired import Desired
from reconciler.plan.budget import gpu_budgets
from reconciler.state import GpuProcess, GpuState, HostState, ObservedState

DESIRED = Desired.model_validate({"version": 1})


def state(*gpus: GpuState) -> ObservedState:
    return ObservedState(
        source="test", gpus=gpus, host=HostState(ram_total_mib=1, ram_available_mib=1, cpus=1)
    )


def h100(**update: object) -> GpuState:
    """An H100 as NVML's v2 memory query reports it: `used` leaves the reserve out."""
    gpu = GpuState(
        index=0,
        uuid="GPU-h100",
        name="NVIDIA H100 80GB HBM3",
        memory_total_mib=81558,
        memory_used_mib=4122,
        memory_free_mib=76956,
        memory_reserved_mib=480,
    )
    return gpu.model_copy(update=update)


def test_reserved_memory_is_charged_once() -> None:
    (b,) = gpu_budgets(DESIRED, state(h100()))
    # total - free = used + reserved = 4602 MiB nobody else can have; headroom 10 % = 8156
    assert (b.foreign_mib, b.reserve_mib, b.budget_mib) == (4602, 8156, 68800)
    assert b.budget_mib != 69761  # used - reserved counted the reserve twice


def test_v1_figures_give_the_same_budget() -> None:
    v1 = h100(memory_used_mib=4602, memory_reserved_mib=None)
    assert gpu_budgets(DESIRED, state(v1))[0].budget_mib == 68800


def test_a_process_in_both_lists_counts_once() -> None:
    game = [
        GpuProcess(pid=7, used_mib=3000, kind="compute", name="game"),
        GpuProcess(pid=7, used_mib=3000, kind="graphics", name="game"),
    ]
    gpu = h100(memory_used_mib=3000, memory_free_mib=78078, memory_reserved_mib=480)
    (b,) = gpu_budgets(DESIRED, state(gpu.model_copy(update={"processes": tuple(game)})))
    assert b.foreign_mib == 3480
    assert b.programs == ("game (pid 7, 3000 MiB)",)


def test_our_process_the_driver_does_not_report_is_not_foreign() -> None:
    ours = GpuProcess(pid=9, used_mib=None, kind="compute", owner="ours", instance="chat")
    gpu = h100(
        memory_used_mib=10000, memory_free_mib=71078, memory_reserved_mib=480, processes=(ours,)
    )
    blind = gpu_budgets(DESIRED, state(gpu))[0]
    assert blind.foreign_mib == 10480  # without the estimate it would look foreign
    (b,) = gpu_budgets(DESIRED, state(gpu), {"0": 10000})
    assert b.foreign_mib == 480


def test_mig_parent_takes_no_model_only_its_slices() -> None:
    parent = h100(mig_mode=True)
    slice0 = h100(mig=0, uuid="MIG-a", memory_total_mib=40192, memory_used_mib=0)
    slice0 = slice0.model_copy(update={"memory_free_mib": 40192, "memory_reserved_mib": 0})
    parent_b, slice_b = gpu_budgets(DESIRED, state(parent, slice0))
    assert not parent_b.usable
    assert parent_b.budget_mib == 0
    assert parent_b.why_not == "MIG is enabled: models go on its slices (0/mig0)"
    assert slice_b.usable
    assert slice_b.budget_mib == 40192 - 4019


def test_mig_enabled_without_slices_says_what_to_do() -> None:
    (b,) = gpu_budgets(DESIRED, state(h100(mig_mode=True)))
    assert b.why_not == "MIG is enabled and no slice is seen: create MIG instances, or disable MIG"
