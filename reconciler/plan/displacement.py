"""What the planner decides when one more model joins a desired file: where it goes, and
which of the file's models change because of it (stop, move, fall back, fewer layers).

The file is planned as it is and with the newcomer appended; the two plans' actions, model by
model, name the models displaced. Both plans are `make_plan`'s: the same budgets, policy,
priorities and reasons `reconcile plan` prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from reconciler.config.desired import Desired, ModelSpec
from reconciler.estimate.facts import ModelFacts
from reconciler.plan.model import Action, Plan
from reconciler.plan.planner import make_plan
from reconciler.state import ObservedState

__all__ = ["Displaced", "Status", "Verdict", "planned"]

Status = Literal["fits", "displacing", "partial", "no"]


@dataclass(frozen=True)
class Displaced:
    """A model of the desired file whose plan changes when the candidate runs."""

    model: str
    priority: int
    before: str  # what its plan did without the candidate: "start on GPU 0", "keep on GPU 1"
    after: str  # "stop", "blocked", "start on GPU 1", "restart as coder-small on GPU 0"
    reason: str


@dataclass(frozen=True)
class Verdict:
    status: Status
    cache_type: str | None = None
    gpus: tuple[str, ...] = ()
    gpu_layers: int | str | None = None
    need_mib: Mapping[str, int] = field(default_factory=dict)  # per GPU label, and "host"
    reason: str = ""
    displaced: tuple[Displaced, ...] = ()
    planned: bool = False  # the desired file's planner decided it
    split: bool = False  # `gpus` hold one split; else each of them would take it alone

    @property
    def fits(self) -> bool:
        """Every layer on the GPU(s), beside what runs or in place of lower priorities."""
        return self.status in ("fits", "displacing")


def _state(a: Action, facts: Mapping[str, ModelFacts]) -> str:
    """What runs after an action: "start on GPU 0", "keep as coder-small on GPU 1", "stop"."""
    if a.action in ("stop", "blocked"):
        return a.action
    variant = f" as {a.variant}" if a.variant and a.variant != a.model else ""
    if not a.gpus:
        return f"{a.action}{variant} on the CPU"
    where = ", ".join(f"GPU {g}" for g in a.gpus)
    found = facts.get(a.variant or a.model)
    every = found.n_layer + 1 if found is not None else None
    partial = isinstance(a.gpu_layers, int) and a.gpu_layers != every
    layers = f" with {a.gpu_layers} layers" if partial else ""
    return f"{a.action}{variant} on {where}{layers}"


def _displaced(
    desired: Desired, facts: Mapping[str, ModelFacts], base: Plan, new: Plan, name: str
) -> tuple[Displaced, ...]:
    """Models whose plan changes when the candidate joins: what they did and do now."""
    before = {a.model: a for a in base.actions}
    out = []
    for a in new.actions:
        old = before.get(a.model)
        if a.model == name or old is None or old.action in ("stop", "blocked", "unmanaged"):
            continue
        if (a.variant, a.gpus, a.gpu_layers) == (old.variant, old.gpus, old.gpu_layers) and (
            a.action not in ("stop", "blocked")
        ):
            continue
        spec = desired.model_named(a.model)
        priority = spec.priority if spec is not None else 0
        out.append(Displaced(a.model, priority, _state(old, facts), _state(a, facts), a.reason))
    return tuple(out)


def planned(
    desired: Desired,
    *,
    observed: ObservedState,
    facts: Mapping[str, ModelFacts],
    problems: Mapping[str, str],
    candidate: ModelSpec,
    cand_facts: ModelFacts,
    cache_type: str | None,
    gpu_layers: int | str | None,
) -> Verdict:
    """The desired file's planner on the file plus the candidate (with the cache type and
    layers the rows found best), compared with the file's own plan."""
    layers = gpu_layers if isinstance(gpu_layers, int) else "all"
    spec = candidate.model_copy(
        update={"cache_type": cache_type or candidate.cache_type, "gpu_layers": layers}
    )
    joined = desired.model_copy(update={"models": (*desired.models, spec)})
    base = make_plan(desired, observed, facts, problems)
    new = make_plan(joined, observed, {**facts, spec.name: cand_facts}, problems)
    mine = next(a for a in new.actions if a.model == spec.name)
    displaced = _displaced(desired, facts, base, new, spec.name)
    if mine.action != "start":
        return Verdict("no", spec.cache_type, reason=mine.reason, planned=True)
    status: Status = "displacing" if displaced else "fits"
    layers_run = mine.gpu_layers
    if isinstance(layers_run, int) and layers_run >= cand_facts.n_layer + 1:
        layers_run = "all"  # the launch counts every layer and the output head
    elif isinstance(layers_run, int):
        status = "partial"
    return Verdict(
        status,
        spec.cache_type,
        mine.gpus,
        layers_run,
        dict(mine.estimate_mib),
        mine.reason,
        displaced,
        planned=True,
        split=len(mine.gpus) > 1,
    )
