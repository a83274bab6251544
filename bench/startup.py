"""How long `reconcile` takes to start, against the time to import what it depends on.

Three commands, each run as a subprocess, interleaved (a, b, c, a, b, c, ...) so that a change
in the machine's load touches all three alike; the median of each:

  (a) python -c "import ruamel.yaml; from pydantic import ..."  the third-party modules the
      plan path needs (pydantic, ruamel.yaml), imported and nothing else;
  (A) every module outside the reconciler package that (b) loads, in the order it loads
      them (listed by running (b) in-process first), then one pydantic model defined:
      pydantic imports most of itself lazily, when a program defines its first model (its
      schema builder, uuid, zoneinfo, importlib.metadata for its plugin scan: about 35 ms
      here), which (a) leaves out. (A) is what any program using these dependencies as
      `plan` does pays before its own first line; (b) - (A) is ours;
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

_LIST_MODULES = """
import contextlib, io, sys
before = set(sys.modules)
from reconciler.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    main(sys.argv[1:])
ours = ("reconciler", "__editable__", "__main__")
print("\\n".join(m for m in sys.modules if m not in before and not m.startswith(ours)))
"""


def _dependencies_as_used(argv: list[str]) -> list[str]:
    """(A): a python -c that imports every module outside our package that `argv` loads, in
    its order, and defines one pydantic model (pydantic's lazy set-up)."""
    listed = subprocess.run(
        [PYTHON, "-c", _LIST_MODULES, *argv[1:]],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.split()
    code = (
        "import importlib\n"
        f"for m in {listed!r}:\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except ImportError:\n"
        "        pass\n"
        "from pydantic import BaseModel\n"
        "class First(BaseModel):\n"
        "    x: int\n"
    )
    return [PYTHON, "-c", code]


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
    COMMANDS["A"] = (
        "import the dependencies as plan uses them",
        _dependencies_as_used(COMMANDS["b"][1]),
    )
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
    d_wall, d_cpu, _code = results["A"]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        "# Start-up time",
        "",
        f"`make bench-startup` (bench/startup.py): median of {runs} runs of each command, "
        f"interleaved; Python {platform.python_version()}, {os.cpu_count()} CPUs, load "
        f"average {load} at the end.",
        "",
        "| | command | exit | wall ms | CPU ms | wall / a | CPU / a | wall / A | CPU / A |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, (title, _argv) in COMMANDS.items():
        wall, cpu, code = results[key]
        lines.append(
            f"| {key} | `{title}` | {code} | {wall * 1000:.0f} | {cpu * 1000:.0f} | "
            f"{wall / a_wall:.2f} | {cpu / a_cpu:.2f} | {wall / d_wall:.2f} | {cpu / d_cpu:.2f} |"
        )
    lines.append("")
    for key, goal in GOALS.items():
        wall, cpu, _code = results[key]
        verdict = {True: "met", False: "not met"}
        lines.append(
            f"- {key}: goal {goal:g}x; against (a) {wall / a_wall:.2f} wall, {cpu / a_cpu:.2f} "
            f"CPU ({verdict[wall / a_wall <= goal]}); against (A) {wall / d_wall:.2f} wall, "
            f"{cpu / d_cpu:.2f} CPU ({verdict[wall / d_wall <= goal]})"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="runs of each command (default 21)")
    args = parser.parse_args()
    compileall.compile_dir(ROOT / "reconciler", quiet=1)
    lines = report(measure(args.runs), args.runs)
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
