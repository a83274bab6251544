"""Placement: time on random instances of growing size, and optimality against brute force.

    make bench-plan                           # prints the figures, writes bench/results/plan.md
    .venv/bin/python bench/plan_bench.py --split-only   # only the split section, prints it

Times: the solver alone (models sized up front) and the whole planner (budgets, options,
estimates, diff) with models sized by `vram_mib`, median of 3 runs, on this machine; with the
search nodes spent and whether every decision was exact (no node limit reached).
Exactness at the size people run: 40 random instances of 50 models x 8 GPUs.
Optimality: 1000 random small instances (<= 8 models, <= 3 GPUs, pins and two-GPU splits;
every other one also with partial-offload and CPU-only options on a limited host; a random
`max_models_per_gpu`) compared with an exhaustive search on the objective (which models are
placed, in priority order).
Splits: GGUF models (a 70B stand-in from desired/dual-gpu.lock.yaml) with `split: auto` on 16,
32 and 64 GPUs, equal cards and a mixed fleet where no two budgets are equal: time to build the
options and the whole plan, and the peak of memory traced by tracemalloc during one plan.
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.config.desired import Desired  # noqa: E402
from reconciler.lockfile import read_lock  # noqa: E402
from reconciler.plan.budget import gpu_budgets  # noqa: E402
from reconciler.plan.options import MAX_SPLIT_GPUS, MAX_SPLIT_SETS, options_for  # noqa: E402
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
SPLIT_GPUS = (16, 32, 64)
SPLIT_MODELS = (1, 4)
# The same fleets planned with commit 551d628's options_for (it sorted every combination for
# each split size), measured once on this machine: recorded here, not re-run (24 GPUs took
# minutes with tracemalloc; at 32 the largest size alone is C(32, 16) = 6e8 sets).
SPLIT_BEFORE = (
    "Before best-first split sets (commit 551d628; recorded, not re-run; one run each): "
    "16 GPUs, one model: 0.31 s and 2.5 MB (equal), 0.54 s and 2.4 MB (mixed); four models: "
    "2.43 s and 8.6 MB (equal; placed as splits over 3, 15, 15 and 15 GPUs, the offered sets "
    "crowding the first GPUs), 0.95 s and 4.5 MB (mixed). 24 GPUs, one model: 15.3 s and 499 MB "
    "(equal), 18.9 s and 521 MB (mixed). 32 and 64 GPUs: not feasible (C(32, 16) = 6e8 sets "
    "sorted in one list)."
)


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


def split_fleet(gpus: int, fleet: str) -> tuple[list[int], list[int]]:
    """Totals and memory held by other programs: equal idle 24 GB cards, or 24/48/80 GB cards
    each with a different amount held (no two budgets equal: the estimate cache's worst case)."""
    if fleet == "equal":
        return [24576] * gpus, [0] * gpus
    return [(24576, 49152, 81920)[g % 3] for g in range(gpus)], [97 * g for g in range(gpus)]


def split_auto(lines: list[str]) -> None:
    lock = read_lock(ROOT / "desired" / "dual-gpu.lock.yaml")
    assert lock is not None
    facts = lock.models["big"].facts
    lines += [
        "",
        f"GGUF models with `split: auto` (Llama 70B Q4_K_M stand-in, ctx 8192): at most "
        f"{MAX_SPLIT_SETS} GPU sets per split size, sizes 2 to {MAX_SPLIT_GPUS}. Options: the "
        "first model's; times: median of 3; peak: tracemalloc over one whole plan.",
        "",
        "| GPUs | fleet | models | options | build options | whole plan | peak | placed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines[-4:]), flush=True)
    for gpus in SPLIT_GPUS:
        for fleet in ("equal", "mixed"):
            for models in SPLIT_MODELS:
                specs = [
                    {"name": f"llama-{k}", "gguf": f"/m/{k}.gguf", "ctx": 8192, "priority": k}
                    for k in range(models)
                ]
                desired = Desired.model_validate({"version": 1, "models": specs})
                known = {m.name: facts for m in desired.models}
                observed = machine(*split_fleet(gpus, fleet))
                budgets = gpu_budgets(desired, observed)
                count = len(options_for(desired.models[0], [], known, budgets))
                t_options = timed(
                    lambda d=desired, f=known, b=budgets: [
                        options_for(m, [], f, b) for m in d.models
                    ]
                )
                t_plan = timed(lambda d=desired, o=observed, f=known: make_plan(d, o, f))
                tracemalloc.start()
                plan = make_plan(desired, observed, known)
                peak = tracemalloc.get_traced_memory()[1] / 1e6
                tracemalloc.stop()
                placed = sum(a.action == "start" for a in plan.actions)
                row = (
                    f"| {gpus} | {fleet} | {models} | {count} | {t_options:.3f} s | "
                    f"{t_plan:.3f} s | {peak:.1f} MB | {placed}/{models} |"
                )
                lines.append(row)
                print(row, flush=True)
    report(lines, SPLIT_BEFORE)


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
    if "--split-only" in sys.argv[1:]:
        split_auto([])
        return 0
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
    split_auto(lines)
    lines += ["", "Regenerate: `make bench-plan`."]
    out = ROOT / "bench" / "results" / "plan.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
