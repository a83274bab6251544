"""A plan: pure data, rendered as text or JSON, saved and checked for staleness by apply."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reconciler.frozen import Frozen

__all__ = ["ACTIONS", "Action", "GpuLine", "Plan"]

ActionKind = Literal["start", "stop", "restart", "move", "keep", "blocked"]
ACTIONS: tuple[ActionKind, ...] = ("start", "stop", "restart", "move", "keep", "blocked")


class Action(Frozen):
    model: str
    action: ActionKind
    variant: str | None = None  # the entry that runs: the model or one of its fallbacks
    gpus: tuple[str, ...] = ()
    tensor_split: tuple[float, ...] | None = None
    gpu_layers: int | str | None = None
    estimate_mib: dict[str, int] = Field(default_factory=dict)
    reason: str


class GpuLine(Frozen):
    label: str
    name: str
    total_mib: int
    reserve_mib: int
    foreign_mib: int
    budget_mib: int
    planned_mib: int
    note: str | None = None


class Plan(Frozen):
    format_version: Literal[1] = 1
    observed: str  # fingerprint of the observed state the plan was computed against
    source: str
    gpus: tuple[GpuLine, ...] = ()
    actions: tuple[Action, ...] = ()
    exact: bool = True
    notes: tuple[str, ...] = ()

    @property
    def summary(self) -> dict[str, int]:
        return {kind: sum(a.action == kind for a in self.actions) for kind in ACTIONS}

    @property
    def changes(self) -> bool:
        return any(a.action in ("start", "stop", "restart", "move") for a in self.actions)
