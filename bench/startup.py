"""How long `reconcile` takes to start, against the time to import what it depends on.

Three commands, each run as a subprocess, interleaved (a, b, c, a, b, c, ...) so that a change
in the machine's load touches all three alike; the median of each:

  (a) python -c "import ruamel.yaml; from pydantic import ..."  the third-party modules the
      plan path needs (pydantic, ruamel.yaml), imported and nothing else;
  (b) reconcile plan desired/workstation.yaml --profile rtx4090
  (c) reconcile check desired/dual-gpu.yaml --profile 2x3090 --profile 4090+3060
      --profile rtx4090
  (d) reconcile check desired/workstation.yaml --profile rtx4090 --profile rtx5090
      --profile a100-80g

(c) exits 1 once it finds that rtx4090 has no GPU 1 (the file pins a model there), before
any model is sized; (d) is a check with three profiles that sizes every model on each.
Goals (issue 13): b within 1.5 times a, c (and d) within 2 times a. Wall time is the goal's measure;
CPU time (user + system, of the process) is printed beside it, being less sensitive to other
work on a small shared machine. The package's bytecode is compiled first (as pip does on
install), since `PYTHONDONTWRITEBYTECODE` would otherwise make every run compile it again.

    .venv/bin/python bench/startup.py [--runs N]      # or: make bench-startup

Prints a Markdown report and writes it to bench/results/startup.md.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "startup.md"
PYTHON = sys.executable
RECONCILE = str(Path(PYTHON).with_name("reconcile"))
DEPS = "import ruamel.yaml; from pydantic import BaseModel, Field, ValidationError"

COMMANDS = {
    "a": ("import the dependencies", [PYTHON, "-c", DEPS]),
    "b": (
        "reconcile plan desired/workstation.yaml --profile rtx4090",
        [RECONCILE, "plan", "desired/workstation.yaml", "--profile", "rtx4090"],
    ),
    "c": (
        "reconcile check desired/dual-gpu.yaml --profile 2x3090 --profile 4090+3060 "
        "--profile rtx4090",
        [
            RECONCILE,
            "check",
            "desired/dual-gpu.yaml",
            "--profile",
            "2x3090",
            "--profile",
            "4090+3060",
            "--profile",
            "rtx4090",
        ],
    ),
    "d": (
        "reconcile check desired/workstation.yaml --profile rtx4090 --profile rtx5090 "
        "--profile a100-80g",
        [
            RECONCILE,
            "check",
            "desired/workstation.yaml",
            "--profile",
            "rtx4090",
            "--profile",
            "rtx5090",
            "--profile",
            "a100-80g",
        ],
    ),
}
GOALS = {"b": 1.5, "c": 2.0, "d": 2.0}


def _run(argv: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, exit code) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        argv, check=False, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode


def measure(runs: int) -> dict[str, tuple[float, float, int]]:
    """Median wall and CPU seconds, and the exit code, of each command."""
    walls: dict[str, list[float]] = {k: [] for k in COMMANDS}
    cpus: dict[str, list[float]] = {k: [] for k in COMMANDS}
    codes: dict[str, int] = {}
    for _title, argv in COMMANDS.values():
        _run(argv)  # warm the file cache
    for _ in range(runs):
        for key, (_title, argv) in COMMANDS.items():
            wall, cpu, code = _run(argv)
            walls[key].append(wall)
            cpus[key].append(cpu)
            codes[key] = code
    return {
        k: (statistics.median(walls[k]), statistics.median(cpus[k]), codes[k]) for k in COMMANDS
    }


def report(results: dict[str, tuple[float, float, int]], runs: int) -> list[str]:
    a_wall, a_cpu, _code = results["a"]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        "# Start-up time",
        "",
        f"`make bench-startup` (bench/startup.py): median of {runs} runs of each command, "
        f"interleaved; Python {platform.python_version()}, {os.cpu_count()} CPUs, load "
        f"average {load} at the end.",
        "",
        "| | command | exit | wall ms | CPU ms | wall / a | CPU / a | goal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, (title, _argv) in COMMANDS.items():
        wall, cpu, code = results[key]
        goal = GOALS.get(key)
        verdict = ""
        if goal is not None:
            verdict = f"<= {goal:g}x: " + ("met" if wall / a_wall <= goal else "not met")
        lines.append(
            f"| {key} | `{title}` | {code} | {wall * 1000:.0f} | {cpu * 1000:.0f} | "
            f"{wall / a_wall:.2f} | {cpu / a_cpu:.2f} | {verdict} |"
        )
    lines.append("")
    for key, goal in GOALS.items():
        wall, cpu, _code = results[key]
        lines.append(
            f"- {key}/a = {wall / a_wall:.2f} (wall), {cpu / a_cpu:.2f} (CPU); goal {goal:g}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (default 15)")
    args = parser.parse_args()
    compileall.compile_dir(ROOT / "reconciler", quiet=1)
    lines = report(measure(args.runs), args.runs)
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
