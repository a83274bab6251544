"""Room for one more model on each GPU, and the places the planner would consider for it.

The room comes from the placement `plan` makes (`place`): each GPU's budget (total - headroom -
other programs, the desired file's policy applied) less what stays there. Without a desired
file every running instance of ours stays, charged as the planner charges it. With one, what
stays is what its plan runs of higher or equal priority than the newcomer (it comes last in the
file, so ties stay) and instances only their label says are ours; models of lower priority may
give way (`Holder`), lowest first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.config.desired import Desired, ModelSpec
from reconciler.estimate.facts import ModelFacts
from reconciler.plan.budget import GpuBudget
from reconciler.plan.options import MAX_SPLIT_GPUS, MAX_SPLIT_SETS, best_sets
from reconciler.plan.placement import place
from reconciler.state import ObservedState

__all__ = ["Holder", "Place", "Room", "Rooms", "places", "rooms"]

Place = tuple[tuple[int, ...], tuple[float, ...] | None]  # GPU positions, --tensor-split


@dataclass(frozen=True)
class Room:
    """One GPU as the candidate finds it."""

    budget: GpuBudget
    free_mib: int  # budget - everything that runs (or that the desired file's plan runs)
    after_mib: int  # budget - what stays when lower-priority models give way
    place: bool  # may take a new start (usable, not too hot)


@dataclass(frozen=True)
class Holder:
    """A model of the desired file of lower priority than the candidate, where it runs."""

    name: str
    priority: int
    mib: Mapping[int, int]  # GPU position -> MiB
    host_mib: int


@dataclass(frozen=True)
class Rooms:
    gpus: tuple[Room, ...]
    host_free_mib: int
    host_after_mib: int  # when lower-priority models give way
    holders: tuple[Holder, ...]  # lowest priority (latest in the file) first


def rooms(
    desired: Desired,
    observed: ObservedState,
    facts: Mapping[str, ModelFacts],
    candidate: ModelSpec,
    *,
    with_file: bool,
) -> Rooms:
    """Each GPU's room, the host's, and who may give way (only `with_file`: `desired` is the
    user's file; otherwise it is an empty one that brings only the default policy)."""
    p = place(desired, observed, facts)
    n = len(p.budgets)
    stay, stay_host = [0] * n, 0
    holders: list[Holder] = []
    if with_file:
        order = {m.name: k for k, m in enumerate(p.principals)}
        for name, o in p.solution.chosen.items():
            spec = desired.model_named(name)
            pieces = {g: mib - o.margin_mib for g, mib in zip(o.gpus, o.mib, strict=True)}
            if spec is not None and spec.priority < candidate.priority:
                holders.append(Holder(name, spec.priority, pieces, o.host_mib))
                continue
            for g, mib in pieces.items():
                stay[g] += mib
            stay_host += o.host_mib
        holders.sort(key=lambda h: -order[h.name])  # lowest priority, latest in the file, first
    else:
        position = {b.label: k for k, b in enumerate(p.budgets)}
        for charge in p.charges.values():  # every running instance of ours stays
            for label, mib in zip(charge.gpus, charge.mib, strict=True):
                if label in position:
                    stay[position[label]] += mib
            stay_host += charge.host_mib
    gpus = []
    for g, b in enumerate(p.budgets):
        after = max(b.budget_mib - stay[g], 0) if b.usable else 0
        given = sum(h.mib.get(g, 0) for h in holders)
        gpus.append(Room(b, max(after - given, 0), after, b.usable and b.startable))
    host_after = max(p.host_mib - stay_host, 0)
    host_free = max(host_after - sum(h.host_mib for h in holders), 0)
    return Rooms(tuple(gpus), host_free, host_after, tuple(holders))


def places(candidate: ModelSpec, gpus: Sequence[Room]) -> list[Place]:
    """Where the planner would try the candidate: each GPU that takes new starts, then (with
    `split: auto`) per size from 2 to `MAX_SPLIT_GPUS`, of the planner's candidate sets (the
    largest budgets first) the one with the most room, `--tensor-split` by budget as the
    planner launches it."""
    usable = [g for g, r in enumerate(gpus) if r.place and r.budget.named_in(candidate.pin)]
    out: list[Place] = [((g,), None) for g in usable]
    if candidate.split != "auto" or len(usable) < 2:
        return out
    budget = [r.budget.budget_mib for r in gpus]
    for size in range(2, min(len(usable), MAX_SPLIT_GPUS) + 1):
        sets = best_sets(usable, budget, size, MAX_SPLIT_SETS)
        best = max(sets, key=lambda s: sum(gpus[g].after_mib for g in s))
        out.append((best, tuple(float(max(budget[g], 1)) for g in best)))
    return out
