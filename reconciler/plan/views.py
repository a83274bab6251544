"""One Plan, two views: text for people (Terraform's symbols) and JSON for scripts."""

from __future__ import annotations

import json

from reconciler.plan.model import ACTIONS, Plan

__all__ = ["SYMBOLS", "plan_json", "plan_text"]

SYMBOLS = {"start": "+", "stop": "-", "restart": "-/+", "move": "~", "keep": " ", "blocked": "!"}
COLOURS = {"start": "32", "stop": "31", "restart": "33", "move": "33", "blocked": "1;31"}


def plan_json(plan: Plan) -> str:
    data = {
        "format_version": plan.format_version,
        "observed": plan.observed,
        "source": plan.source,
        "exact": plan.exact,
        "gpus": [g.model_dump() for g in plan.gpus],
        "actions": [
            {
                "model": a.model,
                "action": a.action,
                "variant": a.variant,
                "gpus": list(a.gpus),
                "tensor_split": list(a.tensor_split) if a.tensor_split else None,
                "gpu_layers": a.gpu_layers,
                "estimate_mib": a.estimate_mib,
                "reason": a.reason,
            }
            for a in plan.actions
        ],
        "summary": plan.summary,
        "notes": list(plan.notes),
    }
    return json.dumps(data, indent=2)


def plan_text(plan: Plan, *, colour: bool = False) -> list[str]:
    def paint(kind: str, text: str) -> str:
        code = COLOURS.get(kind)
        return f"\x1b[{code}m{text}\x1b[0m" if colour and code else text

    lines = [f"Planned against {plan.source} (observed {plan.observed})."]
    for g in plan.gpus:
        note = f"  [{g.note}]" if g.note else ""
        lines.append(
            f"  GPU {g.label} {g.name}: {g.planned_mib}/{g.budget_mib} MiB planned of its budget "
            f"({g.total_mib} total - {g.reserve_mib} headroom - {g.foreign_mib} other "
            f"programs){note}"
        )
    lines += [f"  note: {n}" for n in plan.notes]
    lines.append("")
    lines.append("Legend: + start, - stop, -/+ restart, ~ move, ! blocked; unmarked: keep.")
    lines.append("")
    width = max((len(a.model) for a in plan.actions), default=0)
    for a in plan.actions:
        symbol = SYMBOLS[a.action].rjust(3)
        where = f" on {', '.join('GPU ' + g for g in a.gpus)}" if a.gpus else ""
        head = paint(a.action, f"{symbol} {a.action:<7} {a.model.ljust(width)}")
        lines.append(f"{head}{where}: {a.reason}")
    lines.append("")
    s = plan.summary
    if not plan.changes:
        blocked = f" {s['blocked']} blocked." if s["blocked"] else ""
        lines.append(f"No changes. {s['keep']} to keep.{blocked}")
    else:
        parts = [f"{s[k]} to {k}" for k in ACTIONS if k != "blocked" and s[k]]
        blocked = f", {s['blocked']} blocked" if s["blocked"] else ""
        lines.append("Plan: " + ", ".join(parts) + blocked + ".")
    return lines
