"""`reconcile plan`: what would change to bring the machine to the desired state, and why.

Exit codes, as `terraform plan`: 0 the plan was made (with `--detailed-exitcode`: and it
changes nothing), 2 with `--detailed-exitcode` when it changes something, 1 on an error. A
model marked `required: true` that the plan leaves blocked is an error: the whole plan is still
printed (and saved with `-o`), then one `error:` line per such model on stderr, and the exit
code is 1, with or without `--detailed-exitcode`; the JSON lists them under `errors`.
"""

from __future__ import annotations

import argparse
import os
from typing import TextIO

from reconciler.config.loader import DesiredFile
from reconciler.errors import ReconcileError
from reconciler.pipeline import Pipeline
from reconciler.plan.model import Plan
from reconciler.plan.views import plan_json, plan_text

__all__ = ["RequiredBlocked", "add_arguments", "plan_command", "required_errors"]

EPILOG = """\
exit codes: 0 planned (with --detailed-exitcode: nothing to change); 2 with
--detailed-exitcode: changes pending; 1 an error, also when a model marked
`required: true` would be left blocked (the plan is still printed, and saved with
-o; each such model gets an `error:` line on stderr and an entry in the JSON's
`errors`).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument(
        "file",
        nargs="?",
        default="desired.yaml",
        help="the desired-state file (default: desired.yaml, as for check and apply)",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--profile", metavar="NAME|PATH", help="plan for an idle machine of a hardware profile"
    )
    source.add_argument(
        "--observed",
        metavar="FILE",
        help="plan against a snapshot (`reconcile status --json` writes one)",
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument(
        "-o",
        "--out",
        metavar="FILE",
        help="also save the plan as JSON, with digests of its inputs, for `reconcile apply FILE` "
        "(refused there once the machine or the files changed)",
    )
    p.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 2 when there are changes, 0 when none, 1 on an error (as terraform)",
    )


class RequiredBlocked(ReconcileError):
    """The plan leaves a model marked `required: true` blocked (raised once it is shown)."""


def required_errors(plan: Plan, desired: DesiredFile) -> tuple[str, ...]:
    """One message per model marked `required: true` that the plan leaves blocked, at the
    model's entry in the desired file (`file:line:col: models[i]: ...`), as `check` says it."""
    index = {m.name: i for i, m in enumerate(desired.spec.models)}
    out = []
    for action in plan.actions:
        model = desired.spec.model_named(action.model)
        if action.action == "blocked" and model is not None and model.required:
            message = f"required model {action.model} cannot be placed: {action.reason}"
            out.append(desired.error(("models", index[action.model]), message).render())
    return tuple(out)


def plan_command(args: argparse.Namespace, out: TextIO) -> int:
    if args.out:
        from reconciler.planfile import plan_target  # noqa: PLC0415 (only with -o)

        plan_target(args.out)  # refused before observing, not after
    pipeline = Pipeline(observed=args.observed, profile=args.profile)
    desired = pipeline.load(args.file)
    plan = pipeline.plan(desired)
    errors = required_errors(plan, desired.file)
    if errors:
        plan = plan.model_copy(update={"errors": errors})
    if args.out:
        from reconciler.planfile import save_plan  # noqa: PLC0415

        save_plan(plan, args.out)
    if args.json:
        out.write(plan_json(plan) + "\n")
    else:
        colour = out.isatty() and "NO_COLOR" not in os.environ
        for line in plan_text(plan, colour=colour, snapshot=args.observed):
            out.write(line + "\n")
        if args.out:
            out.write(
                f"Saved the plan to {args.out}, with digests of what it was computed from; "
                f"`reconcile apply {args.out}` carries it out while they still hold.\n"
            )
    if errors:
        raise RequiredBlocked("\n".join(f"error: {error}" for error in errors))
    return 2 if args.detailed_exitcode and plan.changes else 0
