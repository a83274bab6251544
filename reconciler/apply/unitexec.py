"""Instances as systemd units, behind the same interface as the process executor.

`SystemdExecutor` speaks systemctl; this adds what the applier needs of any executor: the
journal's identity check before every stop (pid + start time + our label, as for processes:
systemd's own main pid is checked too), the process's start time for the journal, and the
log tail from journalctl. A stopped instance's unit and environment files are removed: the
next start writes them again from the plan.
"""

from __future__ import annotations

from pathlib import Path

import psutil

from reconciler.apply.process import Started, Stopped, identity_problem
from reconciler.apply.systemd import SystemdExecutor
from reconciler.apply.units import Rendered
from reconciler.errors import ApplyError
from reconciler.observe.journal import JournalEntry

__all__ = ["SystemdInstances"]


class SystemdInstances:
    """The applier's executor for `--executor systemd`."""

    name = "systemd"

    def __init__(
        self, systemd: SystemdExecutor, state_dir: Path, *, start_timeout_s: float = 30.0
    ) -> None:
        self.systemd = systemd
        self.state_dir = state_dir
        self.start_timeout_s = start_timeout_s

    def _env_file(self, unit: str) -> str:
        """Where render puts a unit's secrets: removed with the unit, whoever stops it."""
        return str(self.state_dir / f"{unit}.env")

    def start(self, rendered: Rendered) -> Started:
        try:
            pid, start_time = self.systemd.start(rendered, timeout_s=self.start_timeout_s)
        except ApplyError:
            # a unit that failed to come up is not left retrying (Restart=) unjournaled
            self.systemd.remove(rendered.unit, env_file=rendered.env_file)
            raise
        return Started(pid, start_time, None)

    def follow(self, entry: JournalEntry) -> JournalEntry | None:
        """systemd restarted the unit after a crash (Restart=on-failure): the same instance,
        a new main pid, taken over once it is verified as ours (start time, label)."""
        if entry.unit is None:
            return None
        now = self.systemd.state(entry.unit)
        if not now.running or now.main_pid in (0, entry.pid):
            return None
        try:
            proc = psutil.Process(now.main_pid)
            moved = entry.model_copy(update={"pid": now.main_pid, "start_time": proc.create_time()})
        except psutil.NoSuchProcess:
            return None
        if moved.start_time < entry.start_time or identity_problem(moved, proc) is not None:
            return None
        return moved

    def alive(self, entry: JournalEntry) -> bool:
        if entry.unit is None:
            return False
        if not self.systemd.state(entry.unit).running:
            return False
        try:
            proc = psutil.Process(entry.pid)
        except psutil.NoSuchProcess:
            return False
        return identity_problem(entry, proc) is None

    def stop(self, entry: JournalEntry) -> Stopped:
        if entry.unit is None:
            return Stopped("not ours", "the journal names no unit for it")
        try:
            proc = psutil.Process(entry.pid)
        except psutil.NoSuchProcess:
            proc = None
        why = identity_problem(entry, proc) if proc is not None else "it has exited"
        if why not in (None, "it has exited"):
            return Stopped("not ours", why)
        try:
            self.systemd.stop(entry.unit, pid=entry.pid if why is None else None)
        except ApplyError as exc:
            return Stopped("not ours", str(exc))
        self.systemd.remove(entry.unit, env_file=self._env_file(entry.unit))
        return Stopped("gone" if why else "systemctl stop")

    def log_tail(self, unit: str, lines: int = 20) -> list[str]:
        done = self.systemd._run(self.systemd.logs_argv(unit, lines))
        return (done.stdout or "").splitlines()[-lines:]
