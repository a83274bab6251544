"""A brute-force reference for the placement solver, and random instances to compare on."""

from __future__ import annotations

import random
from collections.abc import Sequence

from reconciler.plan.options import Option
from reconciler.plan.solve import Item, quality


def class_vector(items: Sequence[Item], chosen: dict[str, Option]) -> tuple[int, ...]:
    """The whole objective: per model in priority order, placed (1) and minus its class."""
    return tuple(
        v
        for i in items
        for v in ((1, -quality(chosen[i.name].rank)) if i.name in chosen else (0, 0))
    )


def best_class_vector(
    items: Sequence[Item], capacity: Sequence[int], host: int, max_per_gpu: int | None = None
) -> tuple[int, ...]:
    """The best `class_vector` over every feasible assignment."""
    return _walk(items, capacity, host, max_per_gpu, classes=True)


def placed_vector(items: Sequence[Item], chosen: dict[str, Option]) -> tuple[bool, ...]:
    """The objective: which models are placed, in priority order (compared lexicographically)."""
    return tuple(i.name in chosen for i in items)


def exhaustive(
    items: Sequence[Item],
    capacity: Sequence[int],
    host: int,
    max_per_gpu: int | None = None,
    *,
    classes: bool = True,
) -> tuple[bool, ...]:
    """Which models are placed in the best feasible assignment (no pruning but capacity),
    best meaning, model by model in priority order: placed, then placed at the best class (a
    higher-priority model is never downgraded so that a lower-priority one fits). Without
    `classes`, only which models are placed counts (all True: every model can run together)."""
    best = _walk(items, capacity, host, max_per_gpu, classes=classes)
    return tuple(bool(placed) for placed in best[0::2])


def _walk(
    items: Sequence[Item],
    capacity: Sequence[int],
    host: int,
    max_per_gpu: int | None,
    *,
    classes: bool,
) -> tuple[int, ...]:
    best: tuple[int, ...] = ()
    free = list(capacity)
    count = [0] * len(free)
    limit = max_per_gpu if max_per_gpu is not None else len(items)

    def walk(k: int, host_left: int, vector: tuple[int, ...]) -> None:
        nonlocal best
        if k == len(items):
            best = max(best, vector)
            return
        for o in items[k].options:
            if o.host_mib > host_left or any(
                n > free[g] or count[g] >= limit for g, n in zip(o.gpus, o.mib, strict=True)
            ):
                continue
            for g, n in zip(o.gpus, o.mib, strict=True):
                free[g] -= n
                count[g] += 1
            walk(k + 1, host_left - o.host_mib, (*vector, 1, -quality(o.rank) if classes else 0))
            for g, n in zip(o.gpus, o.mib, strict=True):
                free[g] += n
                count[g] -= 1
        walk(k + 1, host_left, (*vector, 0, 0))

    walk(0, host, ())
    return best


def random_instance(
    rng: random.Random, models: int, gpus: int, *, offload: bool = False
) -> tuple[list[Item], list[int], int]:
    """Models of random sizes with pins and two-GPU splits on GPUs of random budgets. With
    `offload`, some models may also leave layers on a host of limited memory, or run on it
    alone."""
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
        if offload and rng.random() < 0.4:
            part = need // 2 + 300
            options += [Option(f"m{m}", (g,), (part,), need - part, rank=2) for g in allowed]
            options.append(Option(f"m{m}", (), (), need, rank=3))
        items.append(Item(f"m{m}", tuple(options)))
    host = rng.choice([16000, 32000]) if offload else 10**9
    return items, capacity, host


def small_instance(rng: random.Random, n: int) -> tuple[list[Item], list[int], int, int | None]:
    """The n-th small instance (<= 8 models, <= 3 GPUs) compared with brute force: every other
    one with offload options on a limited host, and a random `max_models_per_gpu`."""
    items, capacity, host = random_instance(
        rng, rng.randint(1, 8), rng.randint(1, 3), offload=n % 2 == 1
    )
    return items, capacity, host, rng.choice([None, None, 1, 2, 3])
