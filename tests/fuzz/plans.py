"""The semantic judgement of fuzzed plans: a plan made from an accepted input must make sense.

`mutate` applies weighted mutations to a JSON document (snapshots, profiles).
`SanePlan` is a case's check (`Case.check`) of `plan ... --json`: it names what no plan may
contain (a GPU planned over its budget, a budget above the card, a GPU listed twice, a
negative figure anywhere) and counts the plans it judged. `write_desired` puts the README's
workstation example beside the input with no model required, so that a machine too small for
a model is a plan (exit 0 or 2), not a required model's error about the desired file.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fuzz.harness import Outcome

__all__ = ["Mutation", "SanePlan", "leaves", "mutate", "plan_problems", "write_desired"]

#: A mutation of a JSON document: its name, what it does (in place, or returning the text it
#: makes instead), and its weight among the others.
Mutation = tuple[str, Callable[[random.Random, Any], str | None], int]


def leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every value below the root with its path (children before their parent), for a
    mutation to pick from."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from leaves(value, (*path, i))
    if path:
        yield path, node


def _apply(fn: Callable[[random.Random, Any], str | None], r: random.Random, data: Any) -> Any:
    """One mutation; one that finds the data already too broken for it changes nothing."""
    try:
        return fn(r, data)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError):
        return None


def mutate(r: random.Random, base: Any, mutations: Sequence[Mutation]) -> tuple[str, str]:
    """A copy of `base` after one to three of `mutations` (chosen by weight), as JSON text
    (or the text a mutation made), and the names of the mutations."""
    data = copy.deepcopy(base)
    names = []
    text: str | None = None
    for _ in range(r.choice([1, 1, 2, 3])):
        name, fn, _weight = r.choices(mutations, weights=[m[2] for m in mutations])[0]
        names.append(name)
        text = _apply(fn, r, data)
        if text is not None:
            break
    return (text if text is not None else json.dumps(data, indent=2)), "+".join(names)


DESIRED = Path(__file__).resolve().parents[2] / "desired" / "workstation.yaml"


def write_desired(work: Path) -> str:
    """The workstation example and its lock file in `work`, no model required; its name."""
    text = DESIRED.read_text().replace("required: true", "required: false")
    (work / DESIRED.name).write_text(text)
    lock = DESIRED.with_suffix(".lock.yaml")
    (work / lock.name).write_text(lock.read_text())
    return DESIRED.name


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


@dataclass
class SanePlan:
    """A case's check of a plan printed with `--json`; counts what it judged."""

    checked: int = 0
    nonsense: int = 0

    def __call__(self, outcome: Outcome) -> str | None:
        if outcome.code not in (0, 2):
            return None
        self.checked += 1
        problems = plan_problems(json.loads(outcome.out))
        if not problems:
            return None
        self.nonsense += 1
        return "a nonsense plan: " + "; ".join(problems[:3])

    def summary(self) -> str:
        return f"{self.checked} plans checked, {self.nonsense} nonsense"
