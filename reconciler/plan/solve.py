"""Choosing an option for each model: exact for the sizes people run, bounded beyond.

Objectives, in this order: no GPU over its budget (nor the host, nor `max_models_per_gpu`);
strict priority (a model is placed whenever it can be together with every higher-priority
model that is placed, whatever that costs lower ones, and a placed model is never downgraded
to a fallback, fewer layers or the CPU so that a lower-priority one fits: it may only move to
another GPU or split); then the options' own preference
(the model before a fallback, one GPU before a split, running instances where they are); then
binpack (fill the fullest GPU that fits) or spread (the emptiest).

Priority is decided model by model, highest first. Model k joins the placed set when:
1. it fits beside the current assignment (no search);
2. or a portfolio of searches (`SCHEDULE`: depth-first in priority order, depth-first largest
   first, then GPU-by-GPU bin completion in `packing.py`, then largest first again) finds an
   assignment of the set plus k, moving others; each search either answers, proves there is
   no assignment, or runs out of its share of nodes and hands over to the next.
It is left out without a search when it cannot fit on the empty machine, when the capacity
proof fails for the set, or when a model that needs no more on the same GPUs was already
proven not to fit (the placed set only grows).

The bound: `NODE_LIMIT` nodes per decision (the sum of the schedule's shares), `PLAN_LIMIT`
per plan, and no search over more than `SEARCH_MODELS` models. A decision cut short leaves the
model out and marks the solution inexact; the plan says so. Measured (`bench/plan_bench.py`,
`bench/results/plan.md`): 1000 of 1000 small instances match brute force; 40 of 40 random
instances of 50 models x 8 GPUs are exact (median 0.2 s, max 1.3 s); at 200 x 16 and
1000 x 64 the plan limit is reached and the solver stops after 2 s and 4.5 s (2 cores).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from reconciler.plan.options import VARIANT_RANK, Option
from reconciler.plan.packing import pack
from reconciler.plan.search import Item, Search, dominated, twin_classes

__all__ = ["NODE_LIMIT", "PLAN_LIMIT", "SEARCH_MODELS", "Item", "Solution", "quality", "solve"]

SCHEDULE: tuple[tuple[Literal["priority", "size", "pack"], int], ...] = (
    ("priority", 2_000),
    ("size", 10_000),
    ("pack", 200_000),
    ("size", 38_000),
)
NODE_LIMIT = 250_000
PLAN_LIMIT = 500_000
SEARCH_MODELS = 400  # a search over more models than this is not started


@dataclass
class Solution:
    chosen: dict[str, Option] = field(default_factory=dict)
    exact: bool = True
    nodes: int = 0  # search nodes over every decision
    searches: int = 0  # decisions that needed a search


def _decide(
    search: Search, items: Sequence[Item], node_limit: int
) -> tuple[dict[str, Option] | None, bool]:
    """An assignment of all `items`, or None; and whether a limit cut the answer short."""
    spent = 0
    for way, share in SCHEDULE:
        limit = min(share, node_limit - spent)
        if limit <= 0:
            break
        before = search.nodes
        if way == "pack":
            found, cut = pack(search, items, limit)
        else:
            found, cut = search.run(items, way, limit)
        spent += search.nodes - before
        if found is not None or not cut:
            return found, False
    return None, True


def _staying(item: Item) -> list[tuple[int, int]]:
    """The pieces of a running, movable item where it runs now."""
    if item.running is None or item.fixed:
        return []
    here = next((o for o in item.options if o.here), None) or next(
        (o for o in item.options if o.gpus == item.running), None
    )
    return [] if here is None else list(zip(here.gpus, here.mib, strict=True))


def quality(rank: int) -> int:
    """An option's class for priority (lower is better): one GPU and a split of a variant
    are alike; a fallback, fewer layers on the GPU or the CPU alone are worse."""
    inside = rank % VARIANT_RANK
    return rank - inside if inside <= 1 else rank


def _plain(o: Option) -> Option:
    """An option without its upgrade margin: the margin is asked of an upgrade when it is
    decided, not charged to the models decided after it."""
    if not o.margin_mib:
        return o
    return replace(o, mib=tuple(n - o.margin_mib for n in o.mib), margin_mib=0)


def _kept_at(item: Item, chosen: Option) -> Item:
    """A placed item whose options are those no worse than the one it has (a higher-priority
    model is never downgraded so that a lower-priority one fits), margins dropped."""
    if item.fixed:
        return item
    cap = quality(chosen.rank)
    options = tuple(_plain(o) for o in item.options if quality(o.rank) <= cap)
    return replace(item, options=options)


Placed = tuple[list[Item], dict[str, Option]]  # the placed set, and each one's option


def _join(
    search: Search,
    solution: Solution,
    placed: list[Item],
    refused: list[Item],
    item: Item,
    *,
    plan_limit: int,
    node_limit: int,
) -> Placed | None:
    """The placed set with `item` in it, others moved as they may; None when it cannot join
    (proven, or the search was cut short: then the solution is marked inexact)."""
    together = [*placed, item]
    if (
        not search.alone_fits(item)
        or search.proven_impossible(together)
        or any(dominated(item, r) for r in refused)
    ):
        refused.append(item)
        return None
    result, unsure = _attempt(
        search, solution, together, plan_limit=plan_limit, node_limit=node_limit
    )
    if result is None and not unsure:
        refused.append(item)
    return result


def _attempt(
    search: Search,
    solution: Solution,
    together: list[Item],
    *,
    plan_limit: int,
    node_limit: int,
) -> tuple[Placed | None, bool]:
    """One search over `together`: the placed set (each item capped at its class) and the
    options when an assignment exists; and whether a "no" is not a proof (a limit cut it
    short, or it was not started), which marks the solution inexact."""
    if search.nodes >= plan_limit or len(together) > SEARCH_MODELS:
        solution.exact = False
        return None, True
    solution.searches += 1
    found, cut = _decide(search, together, min(node_limit, plan_limit - search.nodes))
    if found is not None:
        kept = [_kept_at(i, found[i.name]) for i in together]
        return (kept, {name: _plain(o) for name, o in found.items()}), False
    if cut:
        solution.exact = False
    return None, cut


def _improve(
    search: Search,
    solution: Solution,
    placed: list[Item],
    best: dict[str, Option],
    item: Item,
    *,
    plan_limit: int,
    node_limit: int,
) -> Placed:
    """A model that joined on a worse class than it could have (a fallback, fewer layers)
    because of where higher-priority models happened to be: move them, within their own
    classes, when that gives it a better class. Best class first; so the next plan, which
    starts from what this one placed, finds nothing better to restart into."""
    got = quality(best[item.name].rank)
    if item.fixed:
        return placed, best
    others = [i for i in placed if i.name != item.name]
    for q in sorted({quality(o.rank) for o in item.options if quality(o.rank) < got}):
        trial = replace(item, options=tuple(o for o in item.options if quality(o.rank) <= q))
        together = [*others, trial]
        if not search.alone_fits(trial) or search.proven_impossible(together):
            continue
        result, unsure = _attempt(
            search, solution, together, plan_limit=plan_limit, node_limit=node_limit
        )
        if result is not None:
            return result
        if unsure:
            break
    return placed, best


def solve(
    items: Sequence[Item],
    capacity: Sequence[int],
    host_mib: int,
    *,
    max_per_gpu: int | None = None,
    placement: Literal["binpack", "spread"] = "binpack",
    node_limit: int = NODE_LIMIT,
    plan_limit: int = PLAN_LIMIT,
) -> Solution:
    """Items in priority order (highest first); `capacity` is each GPU's budget in MiB."""
    solution = Solution()
    search = Search(
        capacity,
        host_mib,
        max_per_gpu=max_per_gpu,
        placement=placement,
        twins=twin_classes(items, capacity),
    )
    placed: list[Item] = [i for i in items if i.fixed]
    best: dict[str, Option] = {i.name: i.options[0] for i in placed}
    refused: list[Item] = []  # proven not to fit beside the placed set
    # where running models not yet decided are expected to stay: binpack and spread count
    # them, so a start joins a card a running model keeps rather than opening another
    held = [0] * len(capacity)
    for item in items:
        for g, need in _staying(item):
            held[g] += need
    for item in items:
        if item.fixed or not item.options:
            continue
        for g, need in _staying(item):
            held[g] -= need
        free, count, host = search.usage(best, placed)
        outlook = [f - h for f, h in zip(free, held, strict=True)]
        quick = next(iter(search.choices(item, free, host, count, outlook)), None)
        if quick is None:
            joined = _join(
                search,
                solution,
                placed,
                refused,
                item,
                plan_limit=plan_limit,
                node_limit=node_limit,
            )
            if joined is None:
                continue
            placed, best = joined
        else:
            placed = [*placed, _kept_at(item, quick)]
            best = {**best, item.name: _plain(quick)}
        placed, best = _improve(
            search, solution, placed, best, item, plan_limit=plan_limit, node_limit=node_limit
        )
    solution.chosen = best
    solution.nodes = search.nodes
    return solution
