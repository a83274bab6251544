"""The process table (psutil): who a GPU process is, and whether it is one of ours.

A process is ours when its pid and start time match an entry of the journal (what `apply`
started), or when it carries our label in its environment (`RECONCILER_INSTANCE=<model>`);
a child of one of ours (a vLLM worker, say) counts as that instance. A pid that was reused by
another program has another start time and no label: it is foreign. Names never decide.

Container caveat: NVML reports host pids. Inside a container without the host's pid
namespace those pids do not exist or belong to other processes, so every GPU process looks
foreign (and memory is still counted); run the reconciler on the host or with `--pid=host`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from reconciler.observe.journal import JournalEntry

__all__ = ["LABEL", "ProcessInfo", "ProcessTable"]

LABEL = "RECONCILER_INSTANCE"
MAX_DEPTH = 8  # how far up the parent chain a GPU process is traced to an instance
START_TOLERANCE_S = 0.05
_PROC = Path("/proc/self")


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    start_time: float  # seconds since the epoch (psutil's create_time)
    name: str | None
    user: str | None
    cmdline: tuple[str, ...]
    ppid: int
    label: str | None  # our label, where its environment can be read


def _read(pid: int) -> ProcessInfo | None:
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            start = proc.create_time()
            name, ppid = proc.name(), proc.ppid()
            user = _safe_user(proc)
            cmdline = tuple(_safe_cmdline(proc))
        label = _safe_label(proc)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return ProcessInfo(pid, _start_time(pid) or 0.0, None, None, (), 0, None)
    return ProcessInfo(pid, start, name, user, cmdline, ppid, label)


def _safe_user(proc: psutil.Process) -> str | None:
    try:
        return proc.username()
    except (psutil.AccessDenied, KeyError):
        return None


def _safe_cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.AccessDenied:
        return []


def _safe_label(proc: psutil.Process) -> str | None:
    try:
        return proc.environ().get(LABEL)
    except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
        return None  # another user's process: we cannot have started it


def _start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return None


def _stamp(pid: int) -> float | None:
    """A cheap identity of the process `pid`: its start time in clock ticks on Linux (one
    small read of /proc/<pid>/stat), its psutil start time elsewhere; None when gone."""
    if not _PROC.is_dir():
        return _start_time(pid)
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    # Field 22 (starttime); the command name (field 2) may hold spaces, so count from ')'.
    return float(stat[stat.rindex(b")") + 2 :].split()[19])


class ProcessTable:
    """Cached process lookups: static facts are read once per (pid, start time)."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[float, ProcessInfo]] = {}  # pid -> (stamp, info)
        self._now: dict[int, ProcessInfo | None] = {}  # this observation's answers
        self._owners: dict[int, str | None] = {}

    def begin(self) -> None:
        """A new observation: look again at every process, but at each only once."""
        self._now.clear()
        self._owners.clear()

    def info(self, pid: int) -> ProcessInfo | None:
        """The process `pid` now, or None when it is gone."""
        if pid in self._now:
            return self._now[pid]
        self._now[pid] = found = self._lookup(pid)
        return found

    def _lookup(self, pid: int) -> ProcessInfo | None:
        stamp = _stamp(pid)
        if stamp is None:
            self._cache.pop(pid, None)
            return None
        cached = self._cache.get(pid)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        fresh = _read(pid)
        if fresh is None:
            self._cache.pop(pid, None)
        else:
            self._cache[pid] = (stamp, fresh)
        return fresh

    def owner(self, pid: int, journal: Mapping[int, JournalEntry]) -> str | None:
        """The model whose instance `pid` is or descends from, or None when foreign."""
        if pid not in self._owners:
            self._owners[pid] = self._owner(pid, journal)
        return self._owners[pid]

    def _owner(self, pid: int, entries: Mapping[int, JournalEntry]) -> str | None:
        current: int | None = pid
        for _ in range(MAX_DEPTH):
            if current is None or current <= 1:
                return None
            info = self.info(current)
            if info is None:
                return None
            entry = entries.get(current)
            if entry is not None and abs(entry.start_time - info.start_time) <= START_TOLERANCE_S:
                return entry.model
            if info.label:
                return info.label
            current = info.ppid
        return None

    def alive(self, entry: JournalEntry) -> bool:
        """The journal's process still runs: same pid and same start time."""
        info = self.info(entry.pid)
        return info is not None and abs(info.start_time - entry.start_time) <= START_TOLERANCE_S

    def end(self) -> None:
        """Drop what this observation did not look at (exited processes, old pids)."""
        for pid in set(self._cache) - set(self._now):
            del self._cache[pid]
