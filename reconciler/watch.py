"""`reconcile watch`: keep the machine in the desired state as files and GPUs change.

Two triggers lead to one reconcile (observe, plan, apply when the plan has changes):
- the files: the desired file and its lock file, watched through their folder (editors save
  by writing a new file and renaming it over the old one, which a watch on the file itself
  would lose), filtered by name, acted on only when their content changed; a burst of saves
  is one reconcile;
- the machine: one observation per `interval`, cheap because the pipeline keeps one
  observer and its caches for the life of the loop.

A reconcile never runs twice at once, and holds the state folder's lock while it applies, so a
manual `apply` waits. A desired file that does not load leaves the last good state in force,
reported once per content. A plan that would stop every running model is carried out only
when the file really asks for no model: never because the models could not be sized or the
machine could not be read this time.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.apply.applier import Applier
from reconciler.apply.lock import state_lock
from reconciler.errors import ConfigErrors, ReconcileError
from reconciler.lockfile import lock_path
from reconciler.pipeline import DesiredInput, Pipeline
from reconciler.plan.model import CHANGES, Plan

__all__ = ["HEARTBEAT_S", "HOLD_OFF_S", "Watcher", "log_line"]

HEARTBEAT_S = 300.0  # a line saying all is well, at most this often when nothing changes
HOLD_OFF_S = 30.0  # a model that stepped aside returns once its room is back this long
DEBOUNCE_MS = 50


@dataclass
class _Files:
    """The content last acted on, per watched file (None: absent)."""

    digests: dict[Path, str | None] = field(default_factory=dict)

    def changed(self, paths: Iterable[Path]) -> bool:
        moved = False
        for path in paths:
            try:
                digest: str | None = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                digest = None
            if self.digests.get(path, "") != digest:
                self.digests[path] = digest
                moved = True
        return moved


class Watcher:
    """One desired file kept in force on one machine (see the module's text)."""

    def __init__(
        self,
        file: Path,
        *,
        pipeline: Pipeline,
        applier_for: Callable[[Plan, DesiredInput], Applier],
        state_dir: Path,
        interval_s: float = 1.0,
        hold_off_s: float = HOLD_OFF_S,
        emit: Callable[[dict[str, Any]], None],
        lock_timeout_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        hold: Callable[[Plan], Plan] = lambda plan: plan,
    ) -> None:
        self.file = file.resolve()
        self.lock = lock_path(self.file)
        self.pipeline = pipeline
        self.applier_for = applier_for  # renders with this plan's GPUs and this desired file
        self.state_dir = state_dir
        self.interval_s = interval_s
        self.hold_off_s = hold_off_s
        self.emit = emit
        self.lock_timeout_s = lock_timeout_s
        self.clock = clock
        self.hold = hold  # after planning: a crashed model waits out its backoff
        self.stop = threading.Event()
        self.good: DesiredInput | None = None  # the last desired file that loaded
        self._files = _Files()
        self._reported: str | None = None  # the content whose errors were reported
        self._busy = threading.Lock()
        self._quiet_since = clock()
        self._yielded: set[str] = set()  # models we stopped for other programs
        self._back_since: dict[str, float] = {}  # ... since when their room is back

    # -- one reconcile ---------------------------------------------------------------------

    def reload(self) -> None:
        """Load the desired file again; a broken one is reported once and changes nothing."""
        try:
            loaded = self.pipeline.load(self.file)
        except ConfigErrors as exc:
            content = self._files.digests.get(self.file) or ""
            if content != self._reported:
                self._reported = content
                kept = "the last good state stays in force" if self.good else "nothing runs"
                self.emit(
                    {
                        "event": "invalid",
                        "file": str(self.file),
                        "errors": [e.render() for e in exc.errors],
                        "message": f"{self.file} does not load; {kept}",
                    }
                )
            return
        except ReconcileError as exc:
            self.emit({"event": "error", "message": str(exc)})
            return
        self._reported = None
        if self.good is None or loaded.sha256 != self.good.sha256:
            self.emit({"event": "loaded", "file": str(self.file), "models": _names(loaded)})
        self.good = loaded

    def reconcile(self, trigger: str) -> Plan | None:
        """Observe, plan and apply what changed; None when there was nothing to plan. A plan
        with changes is made again under the state lock, after the journal is brought up to
        date (a crashed instance dropped, a unit systemd restarted followed): what is carried
        out is what really runs now."""
        if self.good is None:
            return None
        with self._busy:
            try:
                plan = self.hold(self.pipeline.plan(self.good))
                if not plan.changes:
                    self._heartbeat(plan)
                    return plan
                with state_lock(
                    self.state_dir,
                    timeout_s=self.lock_timeout_s,
                    on_wait=lambda m: self.emit({"event": "waiting", "message": m}),
                ):
                    self.applier_for(plan, self.good).prune()
                    plan = self.hold(self.pipeline.plan(self.good))
                    if plan.changes:
                        self._carry_out(plan, trigger)
            except ReconcileError as exc:
                self.emit({"event": "error", "trigger": trigger, "message": str(exc)})
                return None
            return plan

    def _carry_out(self, plan: Plan, trigger: str) -> None:
        assert self.good is not None
        plan = self._hold(plan)
        if not plan.changes:
            return
        refused = self._refuse(plan)
        if refused:
            self.emit({"event": "held", "trigger": trigger, "message": refused})
            return
        for a in plan.actions:
            if a.action in CHANGES:
                self.emit(
                    {
                        "event": a.action,
                        "model": a.model,
                        "gpus": list(a.gpus),
                        "reason": a.reason,
                        "trigger": trigger,
                    }
                )
        outcome = self.applier_for(plan, self.good).carry_out(plan, self.good.file.spec)
        for a in plan.actions:
            if a.action == "stop" and _yields(a.reason):
                self._yielded.add(a.model)
                self.emit(
                    {
                        "event": "stepped-aside",
                        "model": a.model,
                        "gpus": list(a.gpus),
                        "message": f"{a.model} unloaded to free "
                        + ", ".join(f"GPU {g}" for g in a.gpus)
                        + f": {a.reason}",
                    }
                )
        for line in outcome.failed:
            self.emit({"event": "failed", "message": line})
        for line in outcome.warnings:
            self.emit({"event": "warning", "message": line})
        self._quiet_since = self.clock()

    def _hold(self, plan: Plan) -> Plan:
        """A model that stepped aside for another program returns only once its room has
        been back for `hold_off_s`, so that a program that comes and goes causes no churn."""
        now = self.clock()
        returning = {
            a.model for a in plan.actions if a.action == "start" and a.model in self._yielded
        }
        for model in set(self._back_since) - returning:
            del self._back_since[model]  # the room went again before the hold-off ended
        actions = []
        for a in plan.actions:
            if a.model not in returning:
                actions.append(a)
                continue
            since = self._back_since.setdefault(a.model, now)
            if since == now:
                self.emit(
                    {
                        "event": "holding",
                        "model": a.model,
                        "message": f"room for {a.model} is back; it returns in "
                        f"{self.hold_off_s:g} s unless the room goes again",
                    }
                )
            if now - since >= self.hold_off_s:
                self._yielded.discard(a.model)
                del self._back_since[a.model]
                actions.append(a)
                continue
            wait = self.hold_off_s - (now - since)
            actions.append(
                a.model_copy(
                    update={
                        "action": "blocked",
                        "launch": None,
                        "reason": f"returns in {wait:.0f} s (hold-off after stepping aside)",
                    }
                )
            )
        return plan.model_copy(update={"actions": tuple(actions)})

    def _refuse(self, plan: Plan) -> str | None:
        """Why a plan that stops every running model is not carried out: only an empty
        `models:` may do that, never an error upstream (models that cannot be sized, GPUs
        that could not be read this cycle)."""
        assert self.good is not None
        running = [a for a in plan.actions if a.instance is not None]
        stopping = [a for a in plan.actions if a.action == "stop"]
        if not running or len(stopping) < len(running) or not self.good.file.spec.models:
            return None
        unsized = [a.model for a in plan.actions if a.reason.startswith("cannot be sized")]
        if unsized or any("cannot be sized" in a.reason for a in stopping):
            return (
                "the plan would stop every running model because "
                + (", ".join(unsized) or "some models")
                + " cannot be sized now; nothing was stopped (fix the model files or the lock)"
            )
        if not plan.gpus and any(a.instance is not None and a.instance.gpus for a in stopping):
            why = "; ".join(plan.notes) or "no GPU was seen"
            return (
                f"the plan would stop every running model because no GPU could be read this "
                f"time ({why}); nothing was stopped, the next observation decides"
            )
        return None

    def _heartbeat(self, plan: Plan) -> None:
        if self.clock() - self._quiet_since >= HEARTBEAT_S:
            self._quiet_since = self.clock()
            kept = sum(a.action == "keep" for a in plan.actions)
            self.emit({"event": "heartbeat", "message": f"no changes; {kept} running"})

    # -- the loop --------------------------------------------------------------------------

    def watched(self) -> list[Path]:
        return [self.file, self.lock]

    def run(self) -> None:
        """Until `stop` is set (SIGINT, SIGTERM): files and the machine, each cycle."""
        import watchfiles  # noqa: PLC0415 - only the watcher needs it

        self._files.changed(self.watched())
        self.reload()
        self.reconcile("start")
        timeout_ms = max(int(self.interval_s * 1000), 50)
        due = self.clock() + self.interval_s
        # No filter in watchfiles: a filtered-out event restarts its wait, so a busy folder
        # (a log, a sync tool, a snapshot beside the file) would hold the machine's
        # observation off. Every wake looks at our files' content and at the clock instead.
        for _changes in watchfiles.watch(
            self.file.parent,
            watch_filter=None,
            debounce=DEBOUNCE_MS,
            step=DEBOUNCE_MS,
            stop_event=self.stop,
            rust_timeout=timeout_ms,
            yield_on_timeout=True,
            recursive=False,
            raise_interrupt=False,
        ):
            if self.stop.is_set():
                break
            # An event only wakes the loop early; the content decides: a save seen as several
            # events is one reconcile, and a change made while a reconcile ran (before the
            # watch began, or between two events) is still seen at the next cycle.
            if self._files.changed(self.watched()):
                self.reload()
                self.reconcile("file")
            elif self.clock() >= due:
                self.reconcile("interval")
            else:
                continue
            due = self.clock() + self.interval_s


def _yields(reason: str) -> bool:
    """Whether a stop steps aside, for another program or for heat: it returns only after the
    hold-off (for heat, the hysteresis: a card that cools by a degree does not take it back
    at once)."""
    return any(
        words in reason for words in ("yielding to", "(foreign_processes: exclusive)", "is too hot")
    )


def _names(loaded: DesiredInput) -> list[str]:
    return [m.name for m in loaded.file.spec.models]


def log_line(record: dict[str, Any], *, json_format: bool) -> str:
    """One log line: JSON for machines, else `time event model: message`."""
    stamped = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **record}
    if json_format:
        return json.dumps(stamped, sort_keys=False)
    head = f"{stamped['time']} {record['event']}"
    if "model" in record:
        head += f" {record['model']}"
        if record.get("gpus"):
            head += " on " + ", ".join(f"GPU {g}" for g in record["gpus"])
    text = record.get("reason") or record.get("message") or ""
    if "errors" in record:
        text += "".join(f"\n  {e}" for e in record["errors"])
    if "models" in record:
        text = "models: " + (", ".join(record["models"]) or "none")
    return f"{head}: {text}" if text else head
