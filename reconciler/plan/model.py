"""A plan: pure data, a contract an applier can carry out without deciding anything.

Every start, restart, move and keep carries the resolved `Launch`; every stop, restart, move
and keep names the running instance (`InstanceRef`: pid, start time, unit, how we know it is
ours). A saved plan (`plan -o`) is this model as JSON and loads back unchanged; `inputs`
records what it was computed from, so that `apply` refuses it when any of that changed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, computed_field, model_validator

from reconciler.frozen import Frozen
from reconciler.launch import Launch

__all__ = ["ACTIONS", "CHANGES", "Action", "GpuLine", "InstanceRef", "Plan", "PlanInputs"]

ActionKind = Literal["start", "stop", "restart", "move", "keep", "blocked", "unmanaged"]
ACTIONS: tuple[ActionKind, ...] = (
    "start",
    "stop",
    "restart",
    "move",
    "keep",
    "blocked",
    "unmanaged",
)
CHANGES: tuple[ActionKind, ...] = ("start", "stop", "restart", "move")


class InstanceRef(Frozen):
    """A running instance of ours, as an applier must verify it before signalling it."""

    model: str = Field(description="The entry it runs (a model or one of its fallbacks).")
    pid: int
    start_time: float = Field(description="Process start time (seconds since the epoch).")
    unit: str | None = None
    known_by: Literal["journal", "label"] = Field(
        description="journal: started by us (pid + start time + label match the journal), "
        "may be signalled; label: carries our label but is not in the journal, never signalled "
        "until adopted."
    )
    gpus: tuple[str, ...] = ()
    launch_hash: str | None = Field(None, description="Hash of the launch it was started with.")


class Action(Frozen):
    model: str
    action: ActionKind
    variant: str | None = None  # the entry that runs: the model or one of its fallbacks
    gpus: tuple[str, ...] = ()  # labels, as NVML numbers them
    gpu_uuids: tuple[str, ...] = ()
    tensor_split: tuple[float, ...] | None = None  # fractions, in the order of `gpus`
    gpu_layers: int | str | None = None
    estimate_mib: dict[str, int] = Field(default_factory=dict)  # per GPU label, and host
    reason: str
    launch: Launch | None = None  # what runs after this action (start, restart, move, keep)
    instance: InstanceRef | None = None  # what runs now (stop, restart, move, keep, unmanaged)
    changed: tuple[str, ...] = ()  # restart: the launch fields that differ (no secret values)


class GpuLine(Frozen):
    label: str
    name: str
    uuid: str = ""
    total_mib: int
    reserve_mib: int
    foreign_mib: int
    budget_mib: int
    planned_mib: int
    note: str | None = None


class PlanInputs(Frozen):
    """Digests of what a plan was computed from; any change makes a saved plan stale."""

    desired: str = Field(description="sha256 of the desired file's bytes.")
    lock: str | None = Field(None, description="sha256 of the lock file's bytes; None: none.")
    facts: str = Field(description="sha256 of every model's facts as the estimator used them.")
    facts_by_model: dict[str, str] = Field(
        default_factory=dict,
        description="Per GGUF model: sha256 of its facts (or of why it has none), so that a "
        "stale plan can name the model whose file changed.",
    )
    tool_version: str
    observed: str = Field(description="Fingerprint of the observed machine.")


class Plan(Frozen):
    format_version: Literal[2] = 2
    observed: str  # fingerprint of the observed state the plan was computed against
    source: str
    desired_file: str | None = Field(
        None, description="The desired file it was planned from (apply of a saved plan)."
    )
    inputs: PlanInputs | None = None
    gpus: tuple[GpuLine, ...] = ()
    actions: tuple[Action, ...] = ()
    exact: bool = True
    notes: tuple[str, ...] = ()
    errors: tuple[str, ...] = Field(
        (),
        description="What makes the plan an error (exit 1): a model marked `required: true` "
        "that it leaves blocked.",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def summary(self) -> dict[str, int]:
        """Actions of each kind; written into the JSON, checked when it is read back."""
        return {kind: sum(a.action == kind for a in self.actions) for kind in ACTIONS}

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        """A saved plan carries its summary; it must match the actions it summarises."""
        if not isinstance(data, dict) or "summary" not in data:
            return data
        rest = {k: v for k, v in data.items() if k != "summary"}
        kinds = [a.get("action") if isinstance(a, dict) else None for a in rest.get("actions", ())]
        counted = {kind: kinds.count(kind) for kind in ACTIONS}
        if data["summary"] != counted:
            raise ValueError(f"summary {data['summary']} does not match the actions ({counted})")
        return rest

    @property
    def changes(self) -> bool:
        return any(a.action in CHANGES for a in self.actions)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)
