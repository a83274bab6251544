"""One Plan, two views: text for people (Terraform's symbols) and JSON for scripts."""

from __future__ import annotations

from reconciler.plan.model import ACTIONS, Plan

__all__ = ["SYMBOLS", "plan_json", "plan_text"]

SYMBOLS = {
    "start": "+",
    "stop": "-",
    "restart": "-/+",
    "move": "~",
    "keep": " ",
    "blocked": "!",
    "unmanaged": "?",
}
COLOURS = {"start": "32", "stop": "31", "restart": "33", "move": "33", "blocked": "1;31"}


def plan_json(plan: Plan) -> str:
    """The plan as saved by `plan -o`: the `Plan` model itself, so that it loads back as one."""
    return plan.to_json()


def plan_text(plan: Plan, *, colour: bool = False, snapshot: str | None = None) -> list[str]:
    """The plan for a person; `snapshot`: the file it was planned against (the plan's own
    `source` is then what that snapshot was taken from)."""

    def paint(kind: str, text: str) -> str:
        code = COLOURS.get(kind)
        return f"\x1b[{code}m{text}\x1b[0m" if colour and code else text

    if snapshot is None:
        lines = [f"Planned against {plan.source} (observed {plan.observed})."]
    else:
        lines = [
            f"Planned against snapshot {snapshot} (observed {plan.observed}; taken from "
            f"{plan.source})."
        ]
    for g in plan.gpus:
        note = f"  [{g.note}]" if g.note else ""
        lines.append(
            f"  GPU {g.label} {g.name}: {g.planned_mib}/{g.budget_mib} MiB planned of its budget "
            f"({g.total_mib} total - {g.reserve_mib} headroom - {g.foreign_mib} other "
            f"programs){note}"
        )
    lines += [f"  note: {n}" for n in plan.notes]
    lines.append("")
    lines.append(
        "Legend: + start, - stop, -/+ restart, ~ move, ! blocked, ? unmanaged; unmarked: keep."
    )
    lines.append("")
    width = max((len(a.model) for a in plan.actions), default=0)
    kinds = max((len(a.action) for a in plan.actions), default=0)
    for a in plan.actions:
        symbol = SYMBOLS[a.action].rjust(3)
        where = f" on {', '.join('GPU ' + g for g in a.gpus)}" if a.gpus else ""
        head = paint(a.action, f"{symbol} {a.action.ljust(kinds)} {a.model.ljust(width)}")
        lines.append(f"{head}{where}: {a.reason}")
    lines.append("")
    s = plan.summary
    if not plan.changes:
        blocked = f" {s['blocked']} blocked." if s["blocked"] else ""
        lines.append(f"No changes. {s['keep']} to keep.{blocked}")
    else:
        parts = [f"{s[k]} to {k}" for k in ACTIONS if k not in ("blocked", "unmanaged") and s[k]]
        blocked = f", {s['blocked']} blocked" if s["blocked"] else ""
        lines.append("Plan: " + ", ".join(parts) + blocked + ".")
    return lines
