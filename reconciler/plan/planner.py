"""From desired + observed + model facts to a Plan: placement, then the diff."""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.config.desired import Desired
from reconciler.estimate.facts import ModelFacts
from reconciler.plan.diff import actions
from reconciler.plan.model import GpuLine, Plan
from reconciler.plan.placement import Placement, place, variants_of
from reconciler.state import ObservedState

__all__ = ["make_plan", "variants_of"]


def _lines(p: Placement) -> tuple[GpuLine, ...]:
    planned = [0] * len(p.budgets)
    for o in p.solution.chosen.values():
        for g, mib in zip(o.gpus, o.mib, strict=True):
            planned[g] += mib - o.margin_mib
    lines = []
    for i, b in enumerate(p.budgets):
        note = b.why_not or b.too_hot
        if b.raised:
            raised = "raised to what instances kept as they run hold"
            note = f"{note}; {raised}" if note else raised
        lines.append(
            GpuLine(
                label=b.label,
                name=b.name,
                uuid=b.uuid,
                total_mib=b.total_mib,
                reserve_mib=b.reserve_mib,
                foreign_mib=b.foreign_mib,
                budget_mib=b.budget_mib,
                planned_mib=planned[i],
                note=note,
            )
        )
    return tuple(lines)


def make_plan(
    desired: Desired,
    observed: ObservedState,
    facts: Mapping[str, ModelFacts],
    problems: Mapping[str, str] | None = None,
) -> Plan:
    """The plan. `facts` holds each GGUF model's facts; `problems` why a model has none."""
    placement = place(desired, observed, facts)
    found = actions(desired, placement, dict(facts), dict(problems or {}))
    notes = (
        [] if placement.budgets else [observed.gpu_note or "no NVIDIA GPU: models run on the CPU"]
    )
    if not placement.solution.exact:
        notes.append("the placement search hit its bound; the result may not be optimal")
    return Plan(
        observed=observed.fingerprint(),
        source=observed.source,
        gpus=_lines(placement),
        actions=tuple(found),
        exact=placement.solution.exact,
        notes=tuple(notes),
    )
