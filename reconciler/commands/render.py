"""`reconcile render`: what `apply` would launch for each model, without running anything.

For each start, restart, move and keep of the plan (or one model): the argv (shell-quoted
for display only), the environment (secret values shown as `<secret>`), the health check,
and with `--executor systemd` the unit file as it would be written.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from reconciler.apply.launches import LAUNCHED, PlannedUnit, render_plan
from reconciler.apply.systemd import unit_folder
from reconciler.apply.units import Rendered
from reconciler.config.source import suggest
from reconciler.errors import ApplyError
from reconciler.observe.journal import default_state_dir
from reconciler.pipeline import Pipeline
from reconciler.plan.model import Plan

__all__ = ["add_arguments", "argv_lines", "render_command", "unit_lines"]

SECRET = "<secret>"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", default="desired.yaml", help="the desired-state file")
    p.add_argument("model", nargs="?", help="only this model (default: every one that runs)")
    p.add_argument(
        "--templates",
        metavar="DIR",
        type=Path,
        help="a folder of templates overriding ours file by file (wins over `templates:`)",
    )
    p.add_argument(
        "--executor",
        choices=("process", "systemd"),
        default="process",
        help="systemd: also show the unit file",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--profile", metavar="NAME|PATH", help="plan for an idle profiled machine")
    source.add_argument("--observed", metavar="FILE", help="plan against a saved snapshot")


def argv_lines(argv: tuple[str, ...]) -> list[str]:
    """The argv as a copyable shell command: the program, then each option with its values
    on a line of its own (quoted for display only: nothing is run through a shell)."""
    groups: list[list[str]] = [[argv[0]]]
    for arg in argv[1:]:
        if arg.startswith("-"):
            groups.append([arg])
        else:
            groups[-1].append(arg)
    lines = [shlex.join(groups[0]), *("  " + shlex.join(g) for g in groups[1:])]
    return [line + " \\" for line in lines[:-1]] + lines[-1:]


def _env_lines(r: Rendered) -> Iterator[str]:
    for name, value in r.env.items():
        shown = SECRET if name in r.secret_names else shlex.quote(value)
        yield f"{name}={shown}"


def unit_lines(r: Rendered, path: Path) -> Iterator[str]:
    yield f"unit: {path}"
    yield from ("  " + line for line in (r.unit_text or "").splitlines())
    if r.env_file:
        names = ", ".join(sorted(r.secret_names))
        yield f"environment file: {r.env_file} (0600, written by apply: {names})"


def _unit(u: PlannedUnit, unit_dir: Path | None) -> Iterator[str]:
    r, a = u.rendered, u.action
    runs = f" as {r.variant}" if r.variant != r.model else ""
    where = f"GPU {', '.join(a.gpus)}" if a.gpus else "CPU"
    yield f"{r.model}{runs} ({a.action}, {r.backend}, {where}, launch {r.launch_hash})"
    if u.problem:
        yield f"  warning: {u.problem}"
    yield "  argv:"
    yield from ("    " + line for line in argv_lines(r.argv))
    yield "  environment:"
    yield from ("    " + line for line in _env_lines(r))
    if r.health_url:
        yield f"  health: GET {r.health_url}"
    if r.load is not None and r.ready_url:
        base = r.ready_url.rsplit("/api/", 1)[0]
        yield f"  load: POST {base}/api/generate {json.dumps(r.load)}"
        yield f"  ready: GET {r.ready_url} lists {r.load.get('model')}"
    if unit_dir is not None and r.unit_text is not None:
        for line in unit_lines(r, unit_dir / f"{r.unit}.service"):
            yield f"  {line}".rstrip()


def _selected(plan: Plan, model: str | None) -> list[str] | None:
    if model is None:
        return None
    mine = [a for a in plan.actions if a.model == model]
    if not mine:
        names = {a.model for a in plan.actions}
        raise ApplyError(f"no model named {model!r} in the plan{suggest(model, names)}")
    runs = [a for a in mine if a.action in LAUNCHED]
    if not runs:
        a = mine[0]
        raise ApplyError(f"{model} would not be launched ({a.action}: {a.reason})")
    return [model]


def render_command(args: argparse.Namespace, out: TextIO) -> int:
    pipeline = Pipeline(observed=args.observed, profile=args.profile)
    desired = pipeline.load(args.file)
    plan = pipeline.plan(desired)
    spec = desired.file.spec
    units = render_plan(
        plan,
        spec,
        executor=args.executor,
        templates=args.templates or spec.templates,
        state_dir=default_state_dir(),
        models=_selected(plan, args.model),
        strict=False,
    )
    unit_dir = unit_folder("user", os.environ) if args.executor == "systemd" else None
    out.write(f"Rendered against {plan.source}; nothing was started.\n")
    for u in units:
        out.write("\n")
        for line in _unit(u, unit_dir):
            out.write(line + "\n")
    if not units:
        out.write("Nothing would be launched.\n")
    return 0
