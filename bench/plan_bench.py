"""Placement: time on random instances of growing size, and optimality against brute force.

    .venv/bin/python bench/plan_bench.py        # prints the figures, writes bench/results/plan.md

Times: the solver alone (models sized up front) and the whole planner (budgets, options,
estimates, diff) with models sized by `vram_mib`, median of 3 runs, on this machine.
Optimality: 1000 random small instances (<= 8 models, <= 3 GPUs, pins and two-GPU splits)
compared with an exhaustive search on the objective (which models are placed, in priority
order).
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.plan.planner import make_plan  # noqa: E402
from reconciler.plan.solve import solve  # noqa: E402
from tests.plan.exhaustive import exhaustive, placed_vector, random_instance  # noqa: E402
from tests.plan.test_properties import desired_of, machine  # noqa: E402

SIZES = [(10, 2), (50, 8), (200, 16), (1000, 64)]


def timed(fn: object, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    rng = random.Random(2026)
    lines = [
        "# Placement benchmark",
        "",
        "| models x GPUs | solver | whole plan | placed | exact |",
        "|---|---|---|---|---|",
    ]
    for models, gpus in SIZES:
        items, capacity, host = random_instance(rng, models, gpus)
        solution = solve(items, capacity, host)
        t_solve = timed(
            lambda items=items, capacity=capacity, host=host: solve(items, capacity, host)
        )
        specs = [
            {"vram_mib": rng.randint(500, 24000), "priority": rng.randint(0, 9), "pin": None}
            for _ in range(models)
        ]
        desired = desired_of(specs)
        observed = machine([rng.choice([24576, 81920]) for _ in range(gpus)], [0] * gpus)
        t_plan = timed(lambda d=desired, o=observed: make_plan(d, o, {}))
        placed = sum(placed_vector(items, solution.chosen))
        row = (
            f"| {models} x {gpus} | {t_solve * 1000:.1f} ms | {t_plan * 1000:.1f} ms | "
            f"{placed}/{models} | {solution.exact} |"
        )
        lines.append(row)
        print(row, flush=True)
    matches, total, start = 0, 1000, time.perf_counter()
    for _ in range(total):
        items, capacity, host = random_instance(rng, rng.randint(1, 8), rng.randint(1, 3))
        got = placed_vector(items, solve(items, capacity, host).chosen)
        matches += got == exhaustive(items, capacity, host)
    verdict = f"optimality: {matches}/{total} random small instances match the exhaustive optimum"
    verdict += f" ({time.perf_counter() - start:.1f} s)"
    print(verdict)
    lines += ["", verdict, "", "Regenerate: `.venv/bin/python bench/plan_bench.py`."]
    out = ROOT / "bench" / "results" / "plan.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0 if matches == total else 1


if __name__ == "__main__":
    sys.exit(main())
