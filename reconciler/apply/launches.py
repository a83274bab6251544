"""Every launch of a plan rendered: what `reconcile render` prints and `apply` starts.

The plan's start, restart, move and keep actions carry their `Launch`; this pairs each with
the desired entry it runs (for its `env` values), resolves its program and renders it. The
GPUs' totals come from the plan's `gpus` lines (vLLM's memory fraction needs them).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reconciler.apply.programs import resolve_program
from reconciler.apply.render import render
from reconciler.apply.units import Rendered
from reconciler.config.desired import Desired
from reconciler.errors import ApplyError
from reconciler.plan.model import Action, Plan

__all__ = ["LAUNCHED", "PlannedUnit", "render_plan"]

LAUNCHED = ("start", "restart", "move", "keep")


@dataclass(frozen=True)
class PlannedUnit:
    action: Action
    rendered: Rendered
    problem: str | None = None  # lenient rendering: why the program was not found


def render_plan(
    plan: Plan,
    desired: Desired,
    *,
    executor: Literal["process", "systemd"] = "process",
    templates: Path | None = None,
    state_dir: Path,
    models: Collection[str] | None = None,
    environ: Mapping[str, str] | None = None,
    strict: bool = True,
) -> list[PlannedUnit]:
    """The rendered launch of each start, restart, move and keep (of `models` only, when
    given), in the plan's order. `strict=False` (for showing, not running): a program that
    is not found is rendered by its bare name, with the reason in `problem`."""
    totals = {g.label: g.total_mib for g in plan.gpus}
    out = []
    for action in plan.actions:
        launch = action.launch
        if action.action not in LAUNCHED or launch is None:
            continue
        if models is not None and action.model not in models:
            continue
        spec = desired.model_named(launch.variant)
        if spec is None:
            raise ApplyError(
                f"{action.model}: the plan runs {launch.variant}, which the desired file no "
                "longer has; run `reconcile plan` again"
            )
        problem = None
        try:
            program = resolve_program(launch, desired, environ)
        except ApplyError as exc:
            if strict:
                raise
            program, problem = launch.program, str(exc)
        rendered = render(
            launch,
            spec,
            program=program,
            executor=executor,
            templates=templates,
            state_dir=state_dir,
            gpu_total_mib=totals,
        )
        out.append(PlannedUnit(action, rendered, problem))
    return out
