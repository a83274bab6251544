"""Crashes: an instance that exits by itself is restarted with backoff, then held.

An instance crashed when its journal entry is dropped because its process is gone (we did not
stop it: `Applier.prune`), or when it exits while its health is awaited. Each crash is
recorded in the state folder (`crashes.json`, written atomically, 0600), per desired model,
with the launch hash it crashed with. The record keeps the crashes of one launch within the
window; a crash of another launch starts it afresh.

`hold` is the pure half: it turns the start (or restart) of a model whose launch crashed into
a `blocked` action, and changes nothing else in the plan:
- backoff: after the n-th recent crash, not before `first * 2**(n-1)` seconds (capped);
- crash-looping: once `limit` crashes fall within the window, not until its launch changes
  (another hash) or `reconcile reset MODEL` clears its record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, ValidationError

from reconciler.apply.journal import ensure_state_dir, write_private
from reconciler.errors import ApplyError
from reconciler.frozen import Frozen
from reconciler.observe.journal import JournalEntry
from reconciler.plan.model import Action, Plan

__all__ = [
    "BACKOFF_FIRST_S",
    "BACKOFF_MAX_S",
    "CRASHES",
    "CRASH_LIMIT",
    "CRASH_WINDOW_S",
    "Crash",
    "CrashBook",
    "CrashRecord",
    "ModelCrashes",
    "Noted",
    "Policy",
    "crash_of",
    "hold",
    "looping_lines",
    "recorded",
    "why_held",
]

CRASHES = "crashes.json"
BACKOFF_FIRST_S = 1.0  # the wait after a first crash; doubled after each further one
BACKOFF_MAX_S = 300.0  # ... up to this
CRASH_LIMIT = 5  # this many crashes of one launch within the window: crash-looping
CRASH_WINDOW_S = 600.0


@dataclass(frozen=True)
class Policy:
    """How long to wait after a crash, and when to give up (see the module's text)."""

    limit: int = CRASH_LIMIT
    window_s: float = CRASH_WINDOW_S
    first_s: float = BACKOFF_FIRST_S
    max_s: float = BACKOFF_MAX_S

    def delay(self, crashes: int) -> float:
        """The wait after the `crashes`-th recent crash."""
        if crashes <= 0:
            return 0.0
        return min(self.first_s * 2.0 ** min(crashes - 1, 64), self.max_s)


class Crash(Frozen):
    at: float = Field(description="When the exit was seen (seconds since the epoch).")
    pid: int
    variant: str = Field(description="The entry that ran (the model or a fallback).")
    launch_hash: str | None = None
    last_line: str | None = Field(None, description="The last line of its log, if any.")


class ModelCrashes(Frozen):
    crashes: tuple[Crash, ...] = ()  # recent crashes of one launch, oldest first
    looping: bool = False


class CrashRecord(Frozen):
    format_version: int = 1
    models: dict[str, ModelCrashes] = Field(default_factory=dict)


# -- pure --------------------------------------------------------------------------------


def crash_of(entry: JournalEntry, at: float, last_line: str | None = None) -> tuple[str, Crash]:
    """The desired model whose instance `entry` crashed, and the crash."""
    model = entry.launch.model if entry.launch is not None else entry.model
    launch_hash = entry.launch.hash if entry.launch is not None else None
    return model, Crash(
        at=at, pid=entry.pid, variant=entry.model, launch_hash=launch_hash, last_line=last_line
    )


def recorded(record: CrashRecord, model: str, crash: Crash, policy: Policy) -> CrashRecord:
    """`record` with `crash` of `model` added: earlier crashes of the same launch within the
    window are kept; `limit` of them make it crash-looping."""
    before = record.models.get(model, ModelCrashes())
    kept = tuple(
        c
        for c in before.crashes
        if c.launch_hash == crash.launch_hash and c.at > crash.at - policy.window_s
    )
    same = bool(before.crashes) and before.crashes[-1].launch_hash == crash.launch_hash
    crashes = (*kept, crash)
    now = ModelCrashes(
        crashes=crashes, looping=(before.looping and same) or len(crashes) >= policy.limit
    )
    return record.model_copy(update={"models": {**record.models, model: now}})


def _span(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}".rstrip("0").rstrip(".") + " s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def _count(mc: ModelCrashes) -> str:
    n = len(mc.crashes)
    text = f"{n} crash{'es' if n != 1 else ''}"
    if n > 1:
        text += f" in {_span(mc.crashes[-1].at - mc.crashes[0].at)}"
    return text


def _last(mc: ModelCrashes) -> str:
    c = mc.crashes[-1]
    text = f"the last exit at {_clock(c.at)} (pid {c.pid})"
    if c.last_line:
        text += f", its log ending {c.last_line[:120]!r}"
    return text


def why_held(
    model: str, mc: ModelCrashes | None, launch_hash: str | None, now: float, policy: Policy
) -> str | None:
    """Why `model` may not start `launch_hash` now, or None when it may."""
    if mc is None or not mc.crashes or mc.crashes[-1].launch_hash != launch_hash:
        return None  # no crash, or its launch changed since
    if mc.looping:
        return (
            f"crash-looping: {_count(mc)}, {_last(mc)}; fix it, then `reconcile reset {model}` "
            "(or change its launch)"
        )
    wait = mc.crashes[-1].at + policy.delay(len(mc.crashes)) - now
    if wait <= 0:
        return None
    return (
        f"restarting after a crash in {_span(wait)} (backoff; crash {len(mc.crashes)} of "
        f"{policy.limit} within {_span(policy.window_s)}, {_last(mc)})"
    )


def hold(plan: Plan, record: CrashRecord, now: float, policy: Policy | None = None) -> Plan:
    """`plan` with each start or restart of a launch that crashed, and is in backoff or
    crash-looping, turned into `blocked` (saying why and what to do); nothing else changes."""
    policy = policy or Policy()
    actions: list[Action] = []
    for a in plan.actions:
        why = None
        if a.action in ("start", "restart") and a.launch is not None:
            why = why_held(a.model, record.models.get(a.model), a.launch.hash, now, policy)
        if why is None:
            actions.append(a)
            continue
        blocked: dict[str, object] = {"action": "blocked", "reason": why, "changed": ()}
        if a.action == "start":  # it will not run: no launch, no GPUs (as the planner's)
            blocked |= {"launch": None, "gpus": (), "gpu_uuids": (), "tensor_split": None}
        actions.append(a.model_copy(update=blocked))
    if actions == list(plan.actions):
        return plan
    return plan.model_copy(update={"actions": tuple(actions)})


def looping_lines(record: CrashRecord) -> list[str]:
    """One line per crash-looping model (for `reconcile status`)."""
    return [
        f"crash-looping: {model}: {_count(mc)}, {_last(mc)}; fix it, then `reconcile reset {model}`"
        for model, mc in sorted(record.models.items())
        if mc.looping and mc.crashes
    ]


# -- the file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Noted:
    """A crash as recorded: the model, a line saying what happens next, the recent crashes
    of its launch, and the backoff before it may start again (None: crash-looping)."""

    model: str
    message: str
    crashes: int
    delay_s: float | None


class CrashBook:
    """`crashes.json` in one state folder (the caller holds the state-folder lock)."""

    def __init__(
        self,
        state_dir: Path,
        policy: Policy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state_dir = state_dir
        self.path = state_dir / CRASHES
        self.policy = policy or Policy()
        self.clock = clock

    def read(self) -> CrashRecord:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return CrashRecord()
        except OSError as exc:
            raise ApplyError(
                f"{self.path}: cannot read the crash record ({exc.strerror})"
            ) from None
        try:
            return CrashRecord.model_validate(json.loads(text))
        except (json.JSONDecodeError, ValidationError) as exc:
            first = str(exc).splitlines()[0]
            raise ApplyError(
                f"{self.path}: the crash record is damaged ({first}); remove it to forget "
                "every crash"
            ) from None

    def write(self, record: CrashRecord) -> None:
        ensure_state_dir(self.state_dir)
        write_private(self.path, record.model_dump_json(indent=2) + "\n", "the crash record")

    def record(self, entry: JournalEntry, last_line: str | None = None) -> Noted:
        """Record that `entry`'s instance crashed; what happens next."""
        model, crash = crash_of(entry, self.clock(), last_line)
        record = recorded(self.read(), model, crash, self.policy)
        self.write(record)
        mc = record.models[model]
        head = f"{entry.model} (pid {entry.pid}) crashed"
        if mc.looping:
            message = (
                f"{head}: crash-looping ({_count(mc)}); not started again until its launch "
                f"changes or `reconcile reset {model}`"
            )
            return Noted(model, message, len(mc.crashes), None)
        delay = self.policy.delay(len(mc.crashes))
        message = (
            f"{head} (crash {len(mc.crashes)} of {self.policy.limit} within "
            f"{_span(self.policy.window_s)}); restarting in {_span(delay)}"
        )
        return Noted(model, message, len(mc.crashes), delay)

    def reset(self, model: str) -> bool:
        """Forget `model`'s crashes; False when it has none recorded."""
        record = self.read()
        if model not in record.models:
            return False
        rest = {k: v for k, v in record.models.items() if k != model}
        self.write(record.model_copy(update={"models": rest}))
        return True
