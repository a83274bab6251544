"""Properties of planning: budgets hold, priority is strict, a plan's result is stable, and
the solver reaches the brute-force optimum."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.config.desired import Desired
from reconciler.plan.packing import pack
from reconciler.plan.planner import make_plan
from reconciler.plan.search import Search, twin_classes
from reconciler.plan.solve import solve
from reconciler.state import GpuProcess, GpuState, HostState, ObservedState
from tests.plan.exhaustive import (
    best_class_vector,
    class_vector,
    exhaustive,
    placed_vector,
    small_instance,
)
from tests.plan.simulate import carry_out

MODEL = st.fixed_dictionaries(
    {
        "vram_mib": st.integers(100, 30000),
        "priority": st.integers(0, 5),
        "pin": st.one_of(
            st.none(), st.lists(st.integers(0, 2), min_size=1, max_size=2, unique=True)
        ),
    }
)


def desired_of(models: list[dict[str, Any]], placement: str = "binpack") -> Desired:
    return Desired.model_validate(
        {
            "version": 1,
            "policy": {"placement": placement},
            "models": [
                {"name": f"m{i}", "backend": "command", "argv": ["/bin/x"], **m}
                for i, m in enumerate(models)
            ],
        }
    )


def machine(totals: list[int], foreign: list[int]) -> ObservedState:
    gpus = tuple(
        GpuState(
            index=i,
            uuid=f"GPU-{i}",
            name="GPU",
            memory_total_mib=t,
            memory_used_mib=f,
            memory_free_mib=t - f,
            processes=(GpuProcess(pid=900 + i, used_mib=f, kind="graphics", name="x"),)
            if f
            else (),
        )
        for i, (t, f) in enumerate(zip(totals, foreign, strict=True))
    )
    return ObservedState(
        source="test",
        gpus=gpus,
        host=HostState(ram_total_mib=65536, ram_available_mib=60000, cpus=8),
    )


GPUS = st.lists(st.sampled_from([12288, 24576, 81920]), min_size=1, max_size=3)


@settings(max_examples=150, deadline=None)
@given(st.lists(MODEL, min_size=1, max_size=7), GPUS, st.data())
def test_no_budget_is_exceeded_and_replanning_changes_nothing(
    models: list[dict[str, Any]], totals: list[int], data: st.DataObject
) -> None:
    foreign = [data.draw(st.integers(0, t // 2)) for t in totals]
    for m in models:
        if m["pin"]:
            m["pin"] = [g for g in m["pin"] if g < len(totals)] or None
    desired = desired_of(models, data.draw(st.sampled_from(["binpack", "spread"])))
    observed = machine(totals, foreign)
    plan = make_plan(desired, observed, {})
    assert all(g.planned_mib <= g.budget_mib for g in plan.gpus)
    again = make_plan(desired, carry_out(plan, observed), {})
    assert not again.changes, [(a.model, a.action, a.reason) for a in again.actions]


@settings(max_examples=150, deadline=None)
@given(st.lists(MODEL, min_size=1, max_size=6), GPUS, st.integers(100, 30000))
def test_a_lower_priority_model_never_displaces_a_higher_one(
    models: list[dict[str, Any]], totals: list[int], extra_mib: int
) -> None:
    for m in models:
        m["priority"] += 1
        m["pin"] = None
    observed = machine(totals, [0] * len(totals))
    before = make_plan(desired_of(models), observed, {})
    lowest = {"vram_mib": extra_mib, "priority": 0, "pin": None}
    with_extra = make_plan(desired_of([*models, lowest]), observed, {})
    placed = {a.model for a in before.actions if a.action == "start"}
    still = {a.model for a in with_extra.actions if a.action == "start"}
    assert placed <= still


def test_solver_matches_brute_force_on_small_instances() -> None:
    rng = random.Random(7)
    for n in range(300):
        items, capacity, host, per_gpu = small_instance(rng, n)
        solution = solve(items, capacity, host, max_per_gpu=per_gpu)
        assert solution.exact
        assert placed_vector(items, solution.chosen) == exhaustive(items, capacity, host, per_gpu)
        # and each placed model at the best class it can have beside the higher ones
        assert class_vector(items, solution.chosen) == best_class_vector(
            items, capacity, host, per_gpu
        )


def test_every_search_alone_agrees_with_brute_force() -> None:
    """The solver rarely needs its later searches on small instances, so each one is checked
    on its own: it finds an assignment exactly when one exists, and the assignment holds."""
    rng = random.Random(11)
    for n in range(300):
        items, capacity, host, per_gpu = small_instance(rng, n)
        possible = all(exhaustive(items, capacity, host, per_gpu, classes=False))
        search = Search(
            capacity,
            host,
            max_per_gpu=per_gpu,
            placement="binpack",
            twins=twin_classes(items, capacity),
        )
        for found, cut in (
            search.run(items, "priority", 10**7),
            search.run(items, "size", 10**7),
            pack(search, items, 10**7),
        ):
            assert not cut
            assert (found is not None) == possible
            if found is not None:
                free, count, host_left = search.usage(found, items)
                assert min(free) >= 0
                assert host_left >= 0
                assert per_gpu is None or max(count) <= per_gpu
