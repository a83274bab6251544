"""Carrying a plan out: stops first, memory released, starts in priority order, measured.

The applier decides nothing: it takes a `Plan` (every start carries its resolved launch,
every stop the instance it stops) and the desired file it came from (for `env` values, which
a plan never holds). The journal is written after every step, so an interrupted apply (Ctrl-C,
`kill -9`) leaves a journal the next run reconciles from: a started process is in it before
its health is awaited; a stopped one leaves it as soon as it is gone.

Order: every stop, restart and move first stops the old instance; then, until the observed
machine shows the memory of the stopped processes released (polled every 250 ms), nothing
starts; then each start, restart and move in the plan's order (priority order) starts its
instance and waits for it to be healthy. An instance that fails its health check is stopped
and reported with the tail of its log; the others go on, and apply exits 1. Once everything
has started, the memory NVML measures for each new instance is recorded beside its estimate,
and a warning is given where it exceeds the estimate by more than 10 %.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Protocol

from reconciler.apply.journal import boot_id, update_journal
from reconciler.apply.process import Started, Stopped
from reconciler.apply.units import Rendered
from reconciler.config.desired import Desired, ModelSpec
from reconciler.errors import ApplyError
from reconciler.observe.journal import JOURNAL, JournalEntry, read_journal
from reconciler.plan.model import Action, Plan
from reconciler.state import ObservedState

__all__ = ["MEASURED_MARGIN", "Applier", "Executor", "Outcome"]

MEASURED_MARGIN = 0.10  # measured above estimate by more than this: a warning
RELEASE_POLL_S = 0.25

Render = Callable[[Action, ModelSpec], Rendered]


@contextlib.contextmanager
def _deferred_signals() -> Iterator[None]:
    """SIGINT and SIGTERM are held until the block ends, then delivered (to the handlers in
    force before). Handlers, not the signal mask: a mask would be inherited by the processes
    started inside, which would then ignore the SIGTERM that stops them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []

    def hold(signum: int, _frame: FrameType | None) -> None:
        got.append(signum)

    before = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        if got:
            os.kill(os.getpid(), got[0])


class Executor(Protocol):
    """What the applier needs of an executor (process, systemd): start, verify, stop."""

    name: str

    def start(self, rendered: Rendered) -> Started: ...

    def alive(self, entry: JournalEntry) -> bool: ...

    def stop(self, entry: JournalEntry) -> Stopped: ...

    def log_tail(self, unit: str, lines: int = 20) -> list[str]: ...

    def follow(self, entry: JournalEntry) -> JournalEntry | None:
        """The entry of the same instance under a new process (systemd's Restart=), or None."""
        ...


Ready = Callable[[Rendered, Callable[[], bool], float], tuple[bool, str]]


@dataclass
class Outcome:
    """What an apply did: for the summary line and the exit code."""

    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def code(self) -> int:
        return 1 if self.failed else 0


class Applier:
    """Carries plans out on one machine, through one executor and one state folder."""

    def __init__(
        self,
        *,
        state_dir: Path,
        executor: Executor,
        render: Render | None,
        ready: Ready,
        observe: Callable[[], ObservedState],
        say: Callable[[str], None],
        health_timeout_s: float = 600.0,
        release_timeout_s: float = 60.0,
        others: Mapping[str, Executor] | None = None,
        on_crash: Callable[[JournalEntry], None] | None = None,
    ) -> None:
        """`executor` starts; an instance is stopped and checked by the executor that
        started it (the journal says which): `executor`, or the one of `others` by name.
        `on_crash` is told of each instance that exited by itself (see `crashes.py`): found
        gone by `prune` (in this boot), or gone while its health was awaited."""
        self.state_dir = state_dir
        self.executor = executor
        self.others = dict(others or {})
        self.render = render
        self.ready = ready
        self.observe = observe
        self.say = say
        self.health_timeout_s = health_timeout_s
        self.release_timeout_s = release_timeout_s
        self.on_crash = on_crash

    def journal(self) -> list[JournalEntry]:
        return list(read_journal(self.state_dir / JOURNAL))

    def carry_out(self, plan: Plan, desired: Desired) -> Outcome:
        outcome = Outcome()
        self._report_untouched(plan)
        # Everything that will start is rendered before anything stops: a launch that cannot
        # be rendered (a program not found, a broken template) changes nothing.
        units = [
            (a, self._render(a, desired))
            for a in plan.actions
            if a.action in ("start", "restart", "move")
        ]
        stopped = self._stop(
            [a for a in plan.actions if a.action in ("stop", "restart", "move")], outcome
        )
        if stopped:
            self._wait_released(stopped)
        started: list[tuple[Action, JournalEntry]] = []
        for action, rendered in units:
            entry = self._start(action, rendered, outcome)
            if entry is not None:
                started.append((action, entry))
        if started:
            self._measure(started, outcome)
        return outcome

    def _render(self, a: Action, desired: Desired) -> Rendered:
        spec = desired.model_named(a.variant or a.model)
        if spec is None or a.launch is None:
            raise ApplyError(f"{a.model}: the plan names no launch for it; plan again")
        if self.render is None:
            raise ApplyError("this applier only stops instances")  # down: never starts
        try:
            return self.render(a, spec)
        except ApplyError as exc:
            raise ApplyError(f"{exc}\nnothing was changed") from None

    def prune(self) -> list[JournalEntry]:
        """Bring the journal up to date before planning (the caller holds the lock): drop
        the entries whose process is gone (it crashed, or was stopped outside reconcile), so
        that the plan starts them again; follow a unit systemd restarted."""
        gone = []
        for e in self.journal():
            executor = self._of(e)
            if executor.alive(e):
                continue
            moved = executor.follow(e)
            if moved is not None:  # systemd restarted it: the same unit, a new main process
                self._replace(e, moved)
                self.say(f"  {e.model}: its unit restarted it as pid {moved.pid}; following it")
                continue
            gone.append(e)
        if gone:
            pids = {e.pid for e in gone}
            update_journal(self.state_dir, lambda es: [e for e in es if e.pid not in pids])
            for e in gone:
                self.say(
                    f"  {e.model} (pid {e.pid}) is no longer running; dropped from the journal"
                )
                if self.on_crash is not None and (e.boot_id is None or e.boot_id == boot_id()):
                    self.on_crash(e)  # an entry of an earlier boot did not crash
        return gone

    def _replace(self, old: JournalEntry, new: JournalEntry) -> None:
        update_journal(self.state_dir, lambda es: [new if e == old else e for e in es])

    def stop_all(self, outcome: Outcome | None = None) -> Outcome:
        """`down`: stop every instance of the journal (and only those)."""
        outcome = outcome or Outcome()
        pids = [pid for e in self.journal() for pid in self._stop_entry(e, "down", outcome)]
        self._wait_released(pids)
        return outcome

    def _of(self, entry: JournalEntry) -> Executor:
        if entry.executor == self.executor.name:
            return self.executor
        found = self.others.get(entry.executor)
        if found is None:
            raise ApplyError(
                f"{entry.model} (pid {entry.pid}) was started by the {entry.executor} "
                f"executor; run with --executor {entry.executor} to stop it"
            )
        return found

    def _report_untouched(self, plan: Plan) -> None:
        for a in plan.actions:
            if a.action == "unmanaged":
                self.say(f"? {a.model}: left alone: {a.reason}")
            elif a.action == "blocked":
                self.say(f"! {a.model}: not started: {a.reason}")

    def _stop(self, actions: Sequence[Action], outcome: Outcome) -> list[int]:
        entries = {e.pid: e for e in self.journal()}
        pids: list[int] = []
        for a in actions:
            ref = a.instance
            if ref is None or ref.known_by != "journal":
                continue
            entry = entries.get(ref.pid)
            if entry is None or abs(entry.start_time - ref.start_time) > 0.05:
                self.say(f"- {a.model}: pid {ref.pid} is no longer in the journal; nothing to stop")
                continue
            pids += self._stop_entry(entry, a.action, outcome)
        return pids

    def _stop_entry(self, entry: JournalEntry, why: str, outcome: Outcome) -> tuple[int, ...]:
        """Stop the instance of `entry` and forget it: the pids signalled (to wait on)."""
        result: Stopped = self._of(entry).stop(entry)
        update_journal(self.state_dir, lambda es: [e for e in es if e.pid != entry.pid])
        if result.how == "not ours":
            self.say(
                f"- {entry.model}: pid {entry.pid} was not signalled: {result.detail}; "
                "dropped from the journal"
            )
            return ()
        detail = f" ({result.detail})" if result.detail else ""
        verb = "had already exited" if result.how == "gone" else f"stopped with {result.how}"
        self.say(f"- {entry.model} (pid {entry.pid}) {verb}{detail} [{why}]")
        outcome.stopped.append(entry.model)
        return tuple(dict.fromkeys((entry.pid, *result.pids)))

    def _wait_released(self, pids: Sequence[int]) -> None:
        """Until no GPU lists a stopped process any more; then their memory is free."""
        if not pids:
            return
        deadline = time.monotonic() + self.release_timeout_s
        waiting = set(pids)
        while True:
            state = self.observe()
            holding = [
                (g.label, p.pid, p.used_mib)
                for g in state.gpus
                for p in g.processes
                if p.pid in waiting
            ]
            if not holding:
                return
            if time.monotonic() >= deadline:
                who = ", ".join(f"pid {pid} ({mib} MiB on GPU {gpu})" for gpu, pid, mib in holding)
                raise ApplyError(
                    f"stopped instances still hold GPU memory after {self.release_timeout_s:g} s: "
                    f"{who}; nothing was started. Check `reconcile status`, then apply again"
                )
            time.sleep(RELEASE_POLL_S)

    def _start(self, a: Action, rendered: Rendered, outcome: Outcome) -> JournalEntry | None:
        assert a.launch is not None  # _render checked
        # Ctrl-C (SIGINT) and SIGTERM wait until the start is in the journal: a process we
        # started is never left out of it (SIGKILL cannot be held off: such a process carries
        # our label and shows as `? unmanaged`).
        with _deferred_signals():
            try:
                started = self.executor.start(rendered)
            except ApplyError as exc:
                outcome.failed.append(str(exc))
                self.say(f"! {a.model}: {exc}")
                return None
            entry = self._entry(a, rendered, started)
            update_journal(self.state_dir, lambda es: [*es, entry])  # before waiting for health
        return self._await(a, rendered, started, entry, outcome)

    def _entry(self, a: Action, rendered: Rendered, started: Started) -> JournalEntry:
        assert a.launch is not None
        return JournalEntry(
            model=rendered.variant,
            pid=started.pid,
            start_time=started.start_time,
            unit=rendered.unit,
            gpus=a.launch.gpus,
            port=a.launch.port,
            launch=a.launch,
            estimate_mib=dict(a.estimate_mib),
            executor="systemd" if self.executor.name == "systemd" else "process",
            boot_id=boot_id(),
            log=str(started.log) if started.log is not None else None,
            started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )

    def _await(
        self, a: Action, rendered: Rendered, started: Started, entry: JournalEntry, outcome: Outcome
    ) -> JournalEntry | None:
        """Wait for its health; one that fails is stopped (its memory released before the
        next start) and reported with the end of its log."""
        assert a.launch is not None
        where = ", ".join(f"GPU {g}" for g in a.launch.gpus) or "the CPU"
        self.say(f"+ {a.model}: started {rendered.variant} (pid {started.pid}) on {where}")
        ok, detail = self.ready(rendered, lambda: self.executor.alive(entry), self.health_timeout_s)
        if ok:
            self.say(f"+ {a.model}: ready{': ' + detail if detail else ''}")
            outcome.started.append(a.model)
            return entry
        tail = self.executor.log_tail(rendered.unit)
        exited = not self.executor.alive(entry)
        self._wait_released(self._stop_entry(entry, "failed health", Outcome()))
        if exited and self.on_crash is not None:
            self.on_crash(entry)
        lines = "\n".join(f"    {line}" for line in tail)
        log = str(started.log) if started.log is not None else "its log"
        outcome.failed.append(
            f"{a.model}: {detail}; stopped. Last lines of {log}:\n{lines}"
            if tail
            else f"{a.model}: {detail}; stopped ({log} is empty)"
        )
        self.say(f"! {a.model}: {detail}")
        return None

    def _measure(self, started: Sequence[tuple[Action, JournalEntry]], outcome: Outcome) -> None:
        """NVML's measure of each new instance beside its estimate, in the journal."""
        state = self.observe()
        measured: dict[int, dict[str, int]] = {}
        for inst in state.instances:
            if inst.state == "running":
                measured[inst.pid] = dict(inst.used_by_gpu)
        for a, entry in started:
            got = measured.get(entry.pid)
            if not got:
                continue
            self._replace(entry, entry.model_copy(update={"measured_mib": got}))
            for label, mib in got.items():
                estimate = (entry.estimate_mib or {}).get(label, 0)
                if estimate and mib > estimate * (1 + MEASURED_MARGIN):
                    outcome.warnings.append(
                        f"{a.model}: GPU {label} holds {mib} MiB, {mib - estimate} MiB more "
                        f"than the {estimate} MiB estimated (over {MEASURED_MARGIN:.0%}); "
                        "the plan may overcommit this GPU: report it with `reconcile status`"
                    )
