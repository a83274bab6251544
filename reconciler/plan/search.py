"""Can this set of models run together, and how: a depth-first search with the proofs that cut
it short.

The search gives each model, in a fixed order, one of its options that fits beside those
already given. It is exact: it answers "no" only when no assignment exists. What keeps it fast:

- a memo of failed states (position, free memory, models per GPU), with interchangeable GPUs
  (same budget, and every model's options the same on either) counted once;
- a capacity proof at every node: a model whose every option puts at least `t` MiB on each GPU
  it uses can only go where `t` MiB are free, so for every threshold `t` the memory of the
  models that need pieces of at least `t` must fit in the GPUs with at least `t` free;
- options that lead to the same state up to interchangeable GPUs are tried once.

A search stops after `limit` nodes and says so (it returns `cut`); its "no" is then not a proof.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from reconciler.plan.options import Option

__all__ = ["Item", "Search", "dominated", "take", "twin_classes"]

Order = Literal["priority", "size"]


@dataclass(frozen=True)
class Item:
    name: str
    options: tuple[Option, ...]
    running: tuple[int, ...] | None = None  # GPUs it runs on now
    fixed: bool = False  # keeps its running option whatever the budget (foreign: ignore)

    @functools.cached_property
    def need(self) -> tuple[int, int]:
        """(smallest piece on any GPU, smallest GPU total) over the options; (0, 0) when it
        can do without a GPU or is placed whatever the budget."""
        if self.fixed or not self.options or any(not o.gpus for o in self.options):
            return 0, 0
        return min(min(o.mib) for o in self.options), min(o.total_mib for o in self.options)


def take(o: Option, free: list[int], count: list[int], sign: int = -1) -> None:
    """Put option o on the machine (sign -1: its memory and a model slot taken on each of its
    GPUs) or take it off again (sign +1)."""
    for g, need in zip(o.gpus, o.mib, strict=True):
        free[g] += sign * need
        count[g] -= sign


Shape = tuple[int, int, tuple[tuple[int, int], ...]]  # rank, host MiB, (GPU, MiB) pieces


def _swap(shape: Shape, a: int, b: int) -> Shape:
    rank, host, pieces = shape
    swap = {a: b, b: a}
    return rank, host, tuple(sorted((swap.get(g, g), n) for g, n in pieces))


def twin_classes(items: Sequence[Item], capacity: Sequence[int]) -> tuple[int, ...]:
    """A class per GPU; GPUs of a class can be exchanged in any assignment without changing
    what fits (same budget; swapping them maps every model's options onto themselves)."""
    shapes: list[frozenset[Shape]] = []
    on: list[dict[int, list[Shape]]] = []  # per model: its option shapes on each GPU
    touching: list[set[int]] = [set() for _ in capacity]  # the models with options on g
    for k, item in enumerate(items):
        mine: dict[int, list[Shape]] = {}
        for o in item.options:
            shape = (o.rank, o.host_mib, tuple(sorted(zip(o.gpus, o.mib, strict=True))))
            for g in o.gpus:
                mine.setdefault(g, []).append(shape)
                touching[g].add(k)
        shapes.append(frozenset(sh for group in mine.values() for sh in group))
        on.append(mine)

    def invariant(k: int, a: int, b: int) -> bool:
        moved = [*on[k].get(a, ()), *on[k].get(b, ())]
        return all(_swap(sh, a, b) in shapes[k] for sh in moved)

    cls = list(range(len(capacity)))
    for a, b in itertools.combinations(range(len(capacity)), 2):
        if cls[b] != b or cls[a] != a or capacity[a] != capacity[b] or touching[a] != touching[b]:
            continue
        if all(invariant(k, a, b) for k in touching[a]):
            cls[b] = a
    return tuple(cls)


def dominated(item: Item, failed: Item) -> bool:
    """Every option of `item` needs at least what some option of `failed` needs on the same
    GPUs: where `failed` could not join, `item` cannot either."""
    smaller: dict[tuple[int, ...], list[Option]] = {}
    for o in failed.options:
        smaller.setdefault(o.gpus, []).append(o)
    return all(
        any(
            f.host_mib <= o.host_mib and all(a <= b for a, b in zip(f.mib, o.mib, strict=True))
            for f in smaller.get(o.gpus, ())
        )
        for o in item.options
    )


class _Bound:
    """The capacity proof for the models from position k on (see the module's text)."""

    def __init__(self, seq: Sequence[Item], max_per_gpu: int | None) -> None:
        self.needs = [i.need for i in seq]
        self.max_per_gpu = max_per_gpu
        self._steps: dict[int, list[tuple[int, int]]] = {}

    def steps(self, k: int) -> list[tuple[int, int]]:
        """(threshold, memory of the models needing pieces >= threshold), largest first."""
        if k not in self._steps:
            rest = sorted((n for n in self.needs[k:] if n[1]), reverse=True)
            out: list[tuple[int, int]] = []
            total = 0
            for piece, mib in rest:
                total += mib
                if out and out[-1][0] == piece:
                    out[-1] = (piece, total)
                else:
                    out.append((piece, total))
            self._steps[k] = out
        return self._steps[k]

    def holds(self, k: int, free: Sequence[int], count: Sequence[int]) -> bool:
        steps = self.steps(k)
        if not steps:
            return True
        if self.max_per_gpu is not None:
            slots = sum(max(self.max_per_gpu - c, 0) for c in count)
            if sum(1 for n in self.needs[k:] if n[1]) > slots:
                return False
        room = sorted((f for f in free if f > 0), reverse=True)
        j, avail = 0, 0
        for threshold, need in steps:
            while j < len(room) and room[j] >= threshold:
                avail += room[j]
                j += 1
            if need > avail:
                return False
        return True


class Search:
    """Searches over one machine: GPU budgets, host memory, models per GPU, placement."""

    def __init__(
        self,
        capacity: Sequence[int],
        host: int,
        *,
        max_per_gpu: int | None,
        placement: Literal["binpack", "spread"],
        twins: Sequence[int],
    ) -> None:
        self.capacity = list(capacity)
        self.host = host
        self.max_per_gpu = max_per_gpu
        self.placement = placement
        self.twins = tuple(twins)
        self.nodes = 0  # over every search on this machine

    def fits(self, o: Option, free: Sequence[int], host: int, count: Sequence[int]) -> bool:
        if o.host_mib > host:
            return False
        for g, need in zip(o.gpus, o.mib, strict=True):
            if need > free[g]:
                return False
            if self.max_per_gpu is not None and count[g] >= self.max_per_gpu:
                return False
        return True

    def choices(
        self,
        item: Item,
        free: Sequence[int],
        host: int,
        count: Sequence[int],
        outlook: Sequence[int] | None = None,
    ) -> list[Option]:
        """The item's options that fit, preferred first: rank, where it runs now, then
        binpack/spread by the free memory in `outlook` (default `free`). A fixed item keeps its
        one option whatever it takes."""
        if item.fixed:
            return list(item.options[:1])
        fitting = [o for o in item.options if self.fits(o, free, host, count)]
        sign = 1 if self.placement == "binpack" else -1
        ahead = free if outlook is None else outlook

        def key(o: Option) -> tuple[int, int, int]:
            here = 0 if item.running is not None and o.gpus == item.running else 1
            left = sum(ahead[g] - need for g, need in zip(o.gpus, o.mib, strict=True))
            return (o.rank, here, sign * left)

        fitting.sort(key=key)
        return fitting

    def usage(
        self, chosen: dict[str, Option], items: Sequence[Item]
    ) -> tuple[list[int], list[int], int]:
        """Free memory and model count per GPU, and free host memory, under an assignment."""
        free = list(self.capacity)
        count = [0] * len(free)
        host = self.host
        for item in items:
            o = chosen[item.name]
            host -= o.host_mib
            take(o, free, count)
        return free, count, host

    def alone_fits(self, item: Item) -> bool:
        empty = [0] * len(self.capacity)
        return any(self.fits(o, self.capacity, self.host, empty) for o in item.options)

    def proven_impossible(self, items: Sequence[Item]) -> bool:
        """The capacity proof on an empty machine."""
        return not _Bound(items, self.max_per_gpu).holds(0, self.capacity, [0] * len(self.capacity))

    def run(
        self, items: Sequence[Item], order: Order, limit: int
    ) -> tuple[dict[str, Option] | None, bool]:
        """An assignment of every item, or None; and whether the node limit cut the search
        short. "priority" keeps the items' order (the first assignment found is the preferred
        one); "size" takes the largest first, which proves "no" much sooner."""
        seq = list(items)
        if order == "size":
            seq.sort(key=lambda i: (not i.fixed, -i.need[0], -i.need[1]))
        bound = _Bound(seq, self.max_per_gpu)
        free = list(self.capacity)
        count = [0] * len(free)
        chosen: dict[str, Option] = {}
        failed: set[tuple[object, ...]] = set()
        nodes = 0
        counted = self.max_per_gpu is not None

        def state(k: int, host: int) -> tuple[object, ...]:
            if counted:
                return (k, host, tuple(sorted(zip(self.twins, free, count, strict=True))))
            return (k, host, tuple(sorted(zip(self.twins, free, strict=True))))

        def signature(o: Option) -> tuple[object, ...]:
            pieces = sorted(
                (self.twins[g], free[g], count[g], need)
                for g, need in zip(o.gpus, o.mib, strict=True)
            )
            return (o.rank, o.host_mib, tuple(pieces))

        def dfs(k: int, host: int) -> bool:
            nonlocal nodes
            if k == len(seq):
                return True
            key = state(k, host)
            if key in failed:
                return False
            nodes += 1
            if nodes > limit:
                return False
            item = seq[k]
            if not bound.holds(k, free, count):
                failed.add(key)
                return False
            tried: set[tuple[object, ...]] = set()
            for o in self.choices(item, free, host, count):
                sig = signature(o)
                if sig in tried:
                    continue
                tried.add(sig)
                take(o, free, count)
                chosen[item.name] = o
                if dfs(k + 1, host - o.host_mib):
                    return True
                del chosen[item.name]
                take(o, free, count, +1)
                if item.fixed:
                    break
            if nodes <= limit:
                failed.add(key)
            return False

        found = dfs(0, self.host)
        self.nodes += min(nodes, limit)
        return (dict(chosen) if found else None), nodes > limit
