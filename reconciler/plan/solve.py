"""Choosing an option for each model: exact for the sizes people run, bounded beyond.

Objectives, in this order: no GPU over its budget (nor the host, nor `max_models_per_gpu`);
strict priority (a model is placed whenever it can be together with every higher-priority
model that is placed, whatever that costs lower ones); then the options' own preference
(the model before a fallback, one GPU before a split, running instances where they are); then
binpack (fill the fullest GPU that fits) or spread (the emptiest).

Priority is decided model by model: model k joins the placed set when it fits beside the
current assignment (the fast path), or when a depth-first search finds an assignment of the
set plus k that moves the others. Failed sub-searches are memoised on (position, free
memory), so identical GPUs and repeated states cost once. The search is exact up to
`node_limit` nodes per decision (default 20,000); past it the model is treated as not
fitting and the result is marked inexact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from reconciler.plan.options import Option

__all__ = ["Item", "Solution", "solve"]

NODE_LIMIT = 20_000


@dataclass(frozen=True)
class Item:
    name: str
    options: tuple[Option, ...]
    running: tuple[int, ...] | None = None  # GPUs it runs on now
    fixed: bool = False  # keeps its running option whatever the budget (foreign: ignore)


@dataclass
class Solution:
    chosen: dict[str, Option] = field(default_factory=dict)
    exact: bool = True
    nodes: int = 0


class _Search:
    def __init__(
        self,
        capacity: Sequence[int],
        host: int,
        max_per_gpu: int | None,
        placement: Literal["binpack", "spread"],
        node_limit: int,
    ) -> None:
        self.capacity = list(capacity)
        self.host = host
        self.max_per_gpu = max_per_gpu
        self.placement = placement
        self.node_limit = node_limit
        self.nodes = 0
        self.exhausted = False

    def _fits(self, o: Option, free: list[int], host: int, count: list[int]) -> bool:
        if o.host_mib > host:
            return False
        for g, need in zip(o.gpus, o.mib, strict=True):
            if need > free[g]:
                return False
            if self.max_per_gpu is not None and count[g] >= self.max_per_gpu:
                return False
        return True

    def _order(self, item: Item, free: list[int]) -> list[Option]:
        def key(o: Option) -> tuple[int, int, int]:
            here = 0 if item.running is not None and o.gpus == item.running else 1
            left = sum(free[g] - need for g, need in zip(o.gpus, o.mib, strict=True))
            fill = left if self.placement == "binpack" else -left
            return (o.rank, here, fill)

        return sorted(item.options, key=key)

    def extend(self, chosen: dict[str, Option], items: Sequence[Item], item: Item) -> Option | None:
        """The fast path: an option for `item` beside the current assignment, unchanged."""
        free = list(self.capacity)
        count = [0] * len(free)
        host = self.host
        for placed in items:
            o = chosen[placed.name]
            host -= o.host_mib
            for g, need in zip(o.gpus, o.mib, strict=True):
                free[g] -= need
                count[g] += 1
        return next((o for o in self._order(item, free) if self._fits(o, free, host, count)), None)

    def hopeless(self, items: Sequence[Item], item: Item) -> bool:
        """Cheap proofs that no rearrangement can help: the item alone is too big, or the
        smallest options of all together exceed the total memory."""
        empty = [0] * len(self.capacity)
        if not any(self._fits(o, list(self.capacity), self.host, empty) for o in item.options):
            return True
        smallest = sum(min(o.total_mib for o in i.options) for i in (*items, item))
        return smallest > sum(self.capacity)

    def assign(self, items: Sequence[Item]) -> dict[str, Option] | None:
        free = list(self.capacity)
        count = [0] * len(free)
        chosen: dict[str, Option] = {}
        failed: set[tuple[int, tuple[int, ...], int, tuple[int, ...]]] = set()
        floor = [0 if i.fixed else min(o.total_mib for o in i.options) for i in items]

        def dfs(k: int, host: int) -> bool:
            if k == len(items):
                return True
            state = (k, tuple(free), host, tuple(count))
            if state in failed:
                return False
            self.nodes += 1
            if self.nodes > self.node_limit:
                self.exhausted = True
                return False
            item = items[k]
            if sum(floor[k:]) > sum(free):  # the rest cannot fit whatever the arrangement
                failed.add(state)
                return False
            for o in self._order(item, free):
                if not (item.fixed or self._fits(o, free, host, count)):
                    continue
                for g, need in zip(o.gpus, o.mib, strict=True):
                    free[g] -= need
                    count[g] += 1
                chosen[item.name] = o
                if dfs(k + 1, host - o.host_mib):
                    return True
                del chosen[item.name]
                for g, need in zip(o.gpus, o.mib, strict=True):
                    free[g] += need
                    count[g] -= 1
                if item.fixed:
                    break
            failed.add(state)
            return False

        return dict(chosen) if dfs(0, self.host) else None


def solve(
    items: Sequence[Item],
    capacity: Sequence[int],
    host_mib: int,
    *,
    max_per_gpu: int | None = None,
    placement: Literal["binpack", "spread"] = "binpack",
    node_limit: int = NODE_LIMIT,
) -> Solution:
    """Items in priority order (highest first); `capacity` is each GPU's budget in MiB."""
    solution = Solution()
    placed: list[Item] = [i for i in items if i.fixed]
    best: dict[str, Option] = {}
    search = _Search(capacity, host_mib, max_per_gpu, placement, node_limit)
    if placed:
        best = search.assign(placed) or {}
    for item in items:
        if item.fixed or not item.options:
            continue
        quick = search.extend(best, placed, item)
        if quick is not None:
            placed.append(item)
            best = {**best, item.name: quick}
            continue
        if search.hopeless(placed, item):
            continue
        search.exhausted = False
        search.nodes = 0
        found = search.assign([*placed, item])
        solution.nodes += search.nodes
        if search.exhausted:
            solution.exact = False
        if found is not None:
            placed.append(item)
            best = found
    solution.chosen = best
    return solution
