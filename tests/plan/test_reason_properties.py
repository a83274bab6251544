"""Reasons tell the truth, on random machines and files: what a start says is left is what the
plan leaves, a blocked model really lacks the room it names, and each holder is named with its
own priority ("earlier in the file" exactly when the priorities are equal; a model of lower
priority holds room only where the blocked one would not fit without it either)."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.plan.planner import make_plan
from tests.plan.test_properties import GPUS, MODEL, desired_of, machine

LEFT = re.compile(r"GPU (\d+): (\d+) of (\d+) MiB left")
ROOM = re.compile(r"^needs (\d+) MiB; GPU (\d+) has (\d+) MiB left after (.*)$")
HOLDER = re.compile(r"(m\d+) \(priority (-?\d+)(, earlier in the file)?, (\d+) MiB\)")


@settings(max_examples=150, deadline=None)
@given(st.lists(MODEL, min_size=1, max_size=7), GPUS, st.data())
def test_reasons_match_the_plan(
    models: list[dict[str, Any]], totals: list[int], data: st.DataObject
) -> None:
    foreign = [data.draw(st.integers(0, t // 2)) for t in totals]
    for m in models:
        if m["pin"]:
            m["pin"] = [g for g in m["pin"] if g < len(totals)] or None
    desired = desired_of(models)
    plan = make_plan(desired, machine(totals, foreign), {})
    gpus = {g.label: g for g in plan.gpus}
    priority = {m.name: m.priority for m in desired.models}
    order = [m.name for m in desired.models]
    last_left: dict[str, int] = {}
    for a in plan.actions:
        assert "higher-priority" not in a.reason, a.reason
        if a.action == "start":
            for label, left, budget in LEFT.findall(a.reason):
                assert int(budget) == gpus[label].budget_mib, a.reason
                assert 0 <= int(left) <= int(budget), a.reason
                last_left[label] = int(left)
        room = ROOM.match(a.reason)
        if a.action != "blocked" or room is None:
            continue
        need, label, left, holders = room.groups()
        g = gpus[label]
        assert int(left) == g.budget_mib - g.planned_mib < int(need), a.reason
        below = 0  # what models after it hold: it would not fit without them either
        for name, p, earlier, mib in HOLDER.findall(holders):
            assert int(p) == priority[name], a.reason
            assert bool(earlier) == (int(p) == priority[a.model]), a.reason
            assert order.index(name) < order.index(a.model) or not earlier, a.reason
            assert 0 < int(mib) <= g.planned_mib, a.reason
            if int(p) < priority[a.model]:
                below += int(mib)
        assert int(left) + below < int(need), a.reason
    for label, left in last_left.items():  # the last start on a GPU leaves what the plan does
        assert left == gpus[label].budget_mib - gpus[label].planned_mib
