"""The watcher's hold-off: a model that stepped aside returns only once its room has been
back for the hold-off, and the wait starts again when the room goes again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.pipeline import Pipeline
from reconciler.plan.model import Action, Plan
from reconciler.watch import Watcher


def plan(*actions: tuple[str, str]) -> Plan:
    return Plan(
        observed="x",
        source="test",
        actions=tuple(Action(model=m, action=kind, reason="r") for m, kind in actions),  # type: ignore[arg-type]
    )


def test_hold_off(tmp_path: Path) -> None:
    now = [100.0]
    said: list[dict[str, Any]] = []
    w = Watcher(
        tmp_path / "desired.yaml",
        pipeline=Pipeline(profile="rtx4090"),
        applier_for=lambda p, d: None,  # type: ignore[arg-type,return-value]
        state_dir=tmp_path,
        hold_off_s=30,
        emit=said.append,
        clock=lambda: now[0],
    )
    w._yielded.add("notes")
    start = plan(("notes", "start"), ("chat", "keep"))
    held = w._hold(start)
    assert [a.action for a in held.actions] == ["blocked", "keep"]
    assert held.actions[0].reason == "returns in 30 s (hold-off after stepping aside)"
    assert said[-1]["event"] == "holding"
    now[0] = 120.0
    assert w._hold(start).actions[0].action == "blocked"
    now[0] = 125.0
    w._hold(plan(("chat", "keep")))
    now[0] = 131.0
    assert w._hold(start).actions[0].action == "blocked"
    now[0] = 161.0
    assert w._hold(start).actions[0].action == "start"
    assert "notes" not in w._yielded
    assert w._hold(start).actions[0].action == "start"


def test_a_cycle_that_reads_no_gpu_stops_nothing(tmp_path: Path) -> None:
    """NVML failing for one cycle (no GPU seen) must not stop every model."""
    from reconciler.pipeline import DesiredInput
    from reconciler.plan.model import InstanceRef

    desired = tmp_path / "desired.yaml"
    desired.write_text(
        "version: 1\nmodels:\n  - {name: chat, backend: command, argv: [/bin/c], vram_mib: 9}\n"
    )
    w = Watcher(
        desired,
        pipeline=Pipeline(profile="rtx4090"),
        applier_for=lambda p, d: None,  # type: ignore[arg-type,return-value]
        state_dir=tmp_path,
        emit=lambda r: None,
    )
    w.good = w.pipeline.load(desired)
    assert isinstance(w.good, DesiredInput)
    ref = InstanceRef(model="chat", pid=5, start_time=1.0, known_by="journal", gpus=("0",))
    plan = Plan(
        observed="x",
        source="nvml",
        notes=("no NVIDIA GPU: NVML failed to initialise",),
        actions=(Action(model="chat", action="stop", reason="evicted", instance=ref),),
    )
    held = w._refuse(plan)
    assert held is not None
    assert held.startswith("the plan would stop every running model because no GPU could be")
    assert "NVML failed to initialise" in held
