"""The process table (psutil): who a GPU process is, and whether it is one of ours.

A process is ours when its pid and start time match an entry of the journal (what `apply`
started), or when it carries our label in its environment (`RECONCILER_INSTANCE=<model>`);
a child of one of ours (a vLLM worker, say) counts as that instance. A pid that was reused by
another program has another start time and no label: it is foreign. Names never decide.

A process that NVML lists but that has exited by the time we look it up is dropped from the
list: its memory is on its way out, and the GPU's used memory still counts it until then (the
planner charges memory that no listed process explains to other programs).

Container caveat: NVML reports host pids. Inside a container without the host's pid namespace
those pids do not exist there (so the process is dropped from the list) or belong to other
processes (so it is shown under a wrong name); our own instances, journaled with container
pids, are then not recognised and their memory counts as other programs'. Run the reconciler
on the host, or in a container started with `--pid=host`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil

from reconciler.observe.journal import JournalEntry
from reconciler.observe.text import clean_text

__all__ = ["LABEL", "Owner", "ProcessInfo", "ProcessTable"]

LABEL = "RECONCILER_INSTANCE"
MAX_DEPTH = 8  # how far up the parent chain a GPU process is traced to an instance
START_TOLERANCE_S = 0.05
# Name, command line and environment change at exec(), the start time does not: facts of a
# process younger than this are read again at the next observation rather than cached.
SETTLE_S = 2.0
_HAS_PROC = Path("/proc/self/stat").is_file()


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
            name, ppid = clean_text(proc.name()), proc.ppid()
            user = _safe_user(proc)
            cmdline = tuple(clean_text(arg) for arg in _safe_cmdline(proc))
        label = _safe_label(proc)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return ProcessInfo(pid, _start_time(pid) or 0.0, None, None, (), 0, None)
    return ProcessInfo(pid, start, name, user, cmdline, ppid, label)


def _safe_user(proc: psutil.Process) -> str | None:
    try:
        return clean_text(proc.username())
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


Stamp = tuple[float, bytes]


def _stamp(pid: int) -> Stamp | None:
    """A cheap identity of the process `pid`, None when it is gone: on Linux its start time in
    clock ticks and its command name (which a later exec() changes), from one small read of
    /proc/<pid>/stat; elsewhere its psutil start time."""
    if not _HAS_PROC:
        start = _start_time(pid)
        return None if start is None else (start, b"")
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    # Field 22 (starttime); the command name (field 2) may hold spaces, so count from ')'.
    close = stat.rindex(b")")
    return float(stat[close + 2 :].split()[19]), stat[stat.index(b"(") + 1 : close]


@dataclass(frozen=True)
class Owner:
    """The instance a GPU process belongs to: its model and its top process."""

    model: str
    pid: int
    start_time: float
    source: Literal["journal", "label"]


class ProcessTable:
    """Cached process lookups: static facts are read once per (pid, start time, command
    name), and not cached while a process is younger than `SETTLE_S`."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Stamp, ProcessInfo]] = {}  # pid -> (stamp, info)
        self._now: dict[int, ProcessInfo | None] = {}  # this observation's answers
        self._owners: dict[int, Owner | None] = {}

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
        if fresh is None or time.time() - fresh.start_time < SETTLE_S:
            self._cache.pop(pid, None)  # a young process may not have exec'd its program yet
        else:
            self._cache[pid] = (stamp, fresh)
        return fresh

    def owner(self, pid: int, journal: Mapping[int, Sequence[JournalEntry]]) -> Owner | None:
        """The instance that `pid` is or descends from, or None when the process is foreign.

        `journal` maps a pid to its entries (an old entry may name a pid that was reused)."""
        if pid not in self._owners:
            self._owners[pid] = self._owner(pid, journal)
        return self._owners[pid]

    def _owner(self, pid: int, entries: Mapping[int, Sequence[JournalEntry]]) -> Owner | None:
        """Walk up the parents: a journal match (pid and start time) decides at once; a label
        is followed up to the top of the labelled tree (children inherit the environment)."""
        found: Owner | None = None
        current = pid
        for _ in range(MAX_DEPTH):
            info = self.info(current) if current > 1 else None
            if info is None:
                break
            for entry in entries.get(current, ()):
                if abs(entry.start_time - info.start_time) <= START_TOLERANCE_S:
                    return Owner(entry.model, current, info.start_time, "journal")
            if info.label and (found is None or info.label == found.model):
                found = Owner(info.label, current, info.start_time, "label")
            elif found is not None:
                break  # out of the labelled tree
            current = info.ppid
        return found

    def alive(self, entry: JournalEntry) -> bool:
        """The journal's process still runs: same pid and same start time."""
        info = self.info(entry.pid)
        return info is not None and abs(info.start_time - entry.start_time) <= START_TOLERANCE_S

    def end(self) -> None:
        """Drop what this observation did not look at (exited processes, old pids)."""
        for pid in set(self._cache) - set(self._now):
            del self._cache[pid]
