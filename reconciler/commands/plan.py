"""`reconcile plan`: what would change to bring the machine to the desired state, and why."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TextIO

from reconciler.config.desired import Desired
from reconciler.config.loader import load_desired
from reconciler.estimate.facts import ModelFacts
from reconciler.gguf.reader import ModelFileError
from reconciler.lockfile import lock_path, read_lock, resolve_facts
from reconciler.observe import observe
from reconciler.plan.model import Plan
from reconciler.plan.planner import make_plan
from reconciler.plan.views import plan_json, plan_text

__all__ = ["add_arguments", "build_plan", "model_facts", "plan_command"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", default="desired.yaml", help="the desired-state file")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--profile", metavar="NAME|PATH", help="plan for an idle profiled machine")
    source.add_argument("--observed", metavar="FILE", help="plan against a saved snapshot")
    p.add_argument("--json", action="store_true", help="the plan as JSON")
    p.add_argument("-o", "--out", metavar="FILE", help="save the plan (JSON) for `apply`")
    p.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 2 when there are changes, 0 when none, 1 on error",
    )


def model_facts(
    desired: Desired, file: str
) -> tuple[dict[str, ModelFacts], dict[str, str], list[str]]:
    """Facts of every GGUF model (from the file, else the lock), problems, warnings."""
    lock_file = lock_path(file)
    lock = read_lock(lock_file)
    facts: dict[str, ModelFacts] = {}
    problems: dict[str, str] = {}
    warnings: list[str] = []
    for m in desired.models:
        if m.backend != "llama.cpp":
            continue
        try:
            resolved = resolve_facts(m, lock, lock_file)
        except ModelFileError as exc:
            problems[m.name] = str(exc)
            continue
        facts[m.name] = resolved.facts
        if resolved.warning:
            warnings.append(resolved.warning)
    return facts, problems, warnings


def build_plan(file: str, *, profile: str | None, observed: str | None) -> Plan:
    desired = load_desired(file)
    facts, problems, warnings = model_facts(desired.spec, file)
    state = observe(observed=observed, profile=profile)
    plan = make_plan(desired.spec, state, facts, problems)
    return plan.model_copy(update={"notes": (*plan.notes, *warnings)})


def plan_command(args: argparse.Namespace, out: TextIO) -> int:
    plan = build_plan(args.file, profile=args.profile, observed=args.observed)
    if args.out:
        Path(args.out).write_text(plan_json(plan) + "\n")
    if args.json:
        out.write(plan_json(plan) + "\n")
    else:
        colour = out.isatty() and "NO_COLOR" not in os.environ
        for line in plan_text(plan, colour=colour):
            out.write(line + "\n")
        if args.out:
            out.write(
                f"Saved the plan to {args.out}; `reconcile apply {args.out}` carries it out.\n"
            )
    return 2 if args.detailed_exitcode and plan.changes else 0
