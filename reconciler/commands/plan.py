"""`reconcile plan`: what would change to bring the machine to the desired state, and why."""

from __future__ import annotations

import argparse
import os
from typing import TextIO

from reconciler.pipeline import Pipeline
from reconciler.plan.views import plan_json, plan_text
from reconciler.planfile import plan_target, save_plan

__all__ = ["add_arguments", "plan_command"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", default="desired.yaml", help="the desired-state file")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--profile", metavar="NAME|PATH", help="plan for an idle profiled machine")
    source.add_argument("--observed", metavar="FILE", help="plan against a saved snapshot")
    p.add_argument("--json", action="store_true", help="the plan as JSON")
    p.add_argument(
        "-o",
        "--out",
        metavar="FILE",
        help="save the plan as JSON, with digests of its inputs, for `reconcile apply FILE`",
    )
    p.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 2 when there are changes, 0 when none, 1 on error",
    )


def plan_command(args: argparse.Namespace, out: TextIO) -> int:
    if args.out:
        plan_target(args.out)  # refused before observing, not after
    plan = Pipeline(observed=args.observed, profile=args.profile).run(args.file)
    if args.out:
        save_plan(plan, args.out)
    if args.json:
        out.write(plan_json(plan) + "\n")
    else:
        colour = out.isatty() and "NO_COLOR" not in os.environ
        for line in plan_text(plan, colour=colour):
            out.write(line + "\n")
        if args.out:
            out.write(
                f"Saved the plan to {args.out}, with digests of what it was computed from; "
                f"`reconcile apply {args.out}` carries it out while they still hold.\n"
            )
    return 2 if args.detailed_exitcode and plan.changes else 0
