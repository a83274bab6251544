"""The semantic judgement of fuzzed plans: a plan made from an accepted input must make sense.

A campaign saves each plan it makes (`plan ... --json -o plan.json` in the input's folder);
`nonsense_plans` reads them back and names what no plan may contain: a GPU planned over its
budget, a budget above the card, a GPU listed twice, a negative figure anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["nonsense_plans", "plan_problems"]


def _negatives(node: Any, path: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _negatives(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _negatives(value, f"{path}[{i}]")
    elif isinstance(node, int | float) and not isinstance(node, bool) and node < 0:
        yield f"{path} = {node}"


def plan_problems(plan: dict[str, Any]) -> list[str]:
    """What makes a plan nonsense: a GPU over its budget or listed twice, a negative figure."""
    out = [f"negative: {n}" for n in _negatives(plan)]
    labels = [g["label"] for g in plan["gpus"]]
    uuids = [g["uuid"] for g in plan["gpus"]]
    if len(set(labels)) != len(labels) or len(set(uuids)) != len(uuids):
        out.append(f"a GPU twice: {labels} {uuids}")
    starts: dict[str, int] = {}
    for action in plan["actions"]:
        if action["action"] in ("start", "restart", "move"):
            for label, mib in (action.get("estimate_mib") or {}).items():
                starts[label] = starts.get(label, 0) + mib
    for gpu in plan["gpus"]:
        if gpu["planned_mib"] > gpu["budget_mib"]:
            out.append(f"GPU {gpu['label']}: {gpu['planned_mib']} over {gpu['budget_mib']}")
        if gpu["budget_mib"] > gpu["total_mib"]:
            out.append(f"GPU {gpu['label']}: budget {gpu['budget_mib']} > {gpu['total_mib']}")
        if starts.get(gpu["label"], 0) > gpu["budget_mib"]:
            out.append(f"GPU {gpu['label']}: starts of {starts[gpu['label']]} MiB over budget")
    return out


def nonsense_plans(folder: Path) -> tuple[int, list[str]]:
    """How many plans the campaign saved, and what was wrong with the nonsense ones."""
    plans = sorted(folder.glob("*/plan.json"))
    bad = []
    for path in plans:
        problems = plan_problems(json.loads(path.read_text()))
        if problems:
            bad.append(f"{path.parent.name}: {'; '.join(problems[:3])}")
    return len(plans), bad
