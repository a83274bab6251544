"""A brute-force reference for the placement solver, and random instances to compare on."""

from __future__ import annotations

import random
from collections.abc import Sequence

from reconciler.plan.options import Option
from reconciler.plan.solve import Item


def placed_vector(items: Sequence[Item], chosen: dict[str, Option]) -> tuple[bool, ...]:
    """The objective: which models are placed, in priority order (compared lexicographically)."""
    return tuple(i.name in chosen for i in items)


def exhaustive(items: Sequence[Item], capacity: Sequence[int], host: int) -> tuple[bool, ...]:
    """The best placed-vector over every feasible assignment (no pruning but capacity)."""
    best: tuple[bool, ...] = tuple(False for _ in items)
    free = list(capacity)

    def walk(k: int, host_left: int, vector: tuple[bool, ...]) -> None:
        nonlocal best
        if k == len(items):
            best = max(best, vector)
            return
        for o in items[k].options:
            if o.host_mib > host_left or any(
                n > free[g] for g, n in zip(o.gpus, o.mib, strict=True)
            ):
                continue
            for g, n in zip(o.gpus, o.mib, strict=True):
                free[g] -= n
            walk(k + 1, host_left - o.host_mib, (*vector, True))
            for g, n in zip(o.gpus, o.mib, strict=True):
                free[g] += n
        walk(k + 1, host_left, (*vector, False))

    walk(0, host, ())
    return best


def random_instance(
    rng: random.Random, models: int, gpus: int
) -> tuple[list[Item], list[int], int]:
    """Models of random sizes with pins and splits on GPUs of random budgets."""
    capacity = [rng.choice([8000, 10000, 12000, 20000, 22000, 40000, 76000]) for _ in range(gpus)]
    items = []
    for m in range(models):
        need = rng.randint(500, 24000)
        allowed = [g for g in range(gpus) if rng.random() < 0.8] or [rng.randrange(gpus)]
        options = [Option(f"m{m}", (g,), (need,), 0, rank=0) for g in allowed]
        if len(allowed) > 1 and rng.random() < 0.5:
            a, b = rng.sample(allowed, 2)
            half = need // 2 + 600  # each device pays its own overhead
            options.append(Option(f"m{m}", (a, b), (half, half), 0, rank=1))
        items.append(Item(f"m{m}", tuple(options)))
    return items, capacity, 10**9
