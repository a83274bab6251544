"""Placement: time on random instances of growing size, and optimality against brute force.

    make bench-plan        # prints the figures, writes bench/results/plan.md

Times: the solver alone (models sized up front) and the whole planner (budgets, options,
estimates, diff) with models sized by `vram_mib`, median of 3 runs, on this machine; with the
search nodes spent and whether every decision was exact (no node limit reached).
Exactness at the size people run: 40 random instances of 50 models x 8 GPUs.
Optimality: 1000 random small instances (<= 8 models, <= 3 GPUs, pins and two-GPU splits;
every other one also with partial-offload and CPU-only options on a limited host; a random
`max_models_per_gpu`) compared with an exhaustive search on the objective (which models are
placed, in priority order).
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.plan.planner import make_plan  # noqa: E402
from reconciler.plan.solve import NODE_LIMIT, PLAN_LIMIT, SEARCH_MODELS, solve  # noqa: E402
from tests.plan.exhaustive import (  # noqa: E402
    exhaustive,
    placed_vector,
    random_instance,
    small_instance,
)
from tests.plan.test_properties import desired_of, machine  # noqa: E402

SIZES = [(10, 2), (50, 8), (200, 16), (1000, 64)]


def timed(fn: object, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sizes(rng: random.Random, lines: list[str]) -> None:
    lines += [
        "| models x GPUs | solver | whole plan | placed | exact | nodes | searches |",
        "|---|---|---|---|---|---|---|",
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
            f"| {models} x {gpus} | {t_solve:.2f} s | {t_plan:.2f} s | {placed}/{models} | "
            f"{'yes' if solution.exact else 'no'} | {solution.nodes:,} | {solution.searches} |"
        )
        lines.append(row)
        print(row, flush=True)


def report(lines: list[str], text: str) -> None:
    """A finding: printed now, and a paragraph of the results file."""
    lines += ["", text]
    print(text, flush=True)


def exactness(rng: random.Random, lines: list[str], runs: int = 40) -> None:
    times, exact, nodes = [], 0, []
    for _ in range(runs):
        items, capacity, host = random_instance(rng, 50, 8)
        start = time.perf_counter()
        solution = solve(items, capacity, host)
        times.append(time.perf_counter() - start)
        exact += solution.exact
        nodes.append(solution.nodes)
    row = (
        f"50 x 8, {runs} random instances: {exact}/{runs} exact; time median "
        f"{statistics.median(times):.2f} s, max {max(times):.2f} s; nodes median "
        f"{int(statistics.median(nodes)):,}, max {max(nodes):,}"
    )
    report(lines, row)


def optimality(rng: random.Random, lines: list[str], total: int = 1000) -> bool:
    matches, inexact, start = 0, 0, time.perf_counter()
    for n in range(total):
        items, capacity, host, per_gpu = small_instance(rng, n)
        solution = solve(items, capacity, host, max_per_gpu=per_gpu)
        inexact += not solution.exact
        got = placed_vector(items, solution.chosen)
        matches += got == exhaustive(items, capacity, host, per_gpu)
    verdict = (
        f"optimality: {matches}/{total} random small instances match the exhaustive optimum "
        f"({total // 2} with offload and CPU options; random max_models_per_gpu; {inexact} "
        "inexact; "
        f"{time.perf_counter() - start:.1f} s)"
    )
    report(lines, verdict)
    return matches == total


def main() -> int:
    rng = random.Random(2026)
    lines = [
        "# Placement benchmark",
        "",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.machine()}. Limits: {NODE_LIMIT:,} nodes per decision, "
        f"{PLAN_LIMIT:,} per plan, no search over more than {SEARCH_MODELS} models.",
        "",
        "Random instances ask for far more than the GPUs hold (models of 0.5 to 24 GB, GPUs of",
        "8 to 76 GB), so most models are left out and priority decisions need searches. The",
        "solver column times `solve` on one instance; the whole-plan column runs `make_plan`",
        "(budgets, options, diff) on another of the same size with 24 or 80 GB GPUs.",
        "",
    ]
    sizes(rng, lines)
    exactness(rng, lines)
    ok = optimality(rng, lines)
    lines += ["", "Regenerate: `make bench-plan`."]
    out = ROOT / "bench" / "results" / "plan.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
