"""The process executor (the default): each instance a detached process group of ours.

Start: the rendered argv (never a shell string) in its own session and process group, our
label in its environment, stdout and stderr appended to `<state>/logs/<unit>.log` (rotated by
size when an instance starts: one previous file is kept). Stop: the identity is verified right
before signalling (pid, process start time and our label in its environment; a pidfd pins the
process between the check and the signal where the kernel has them), SIGTERM to the group,
`stop_timeout` to exit, then SIGKILL to what is left of the group, each member verified as
ours. A process that is not ours is never signalled, whatever its name or command line.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from reconciler.apply.journal import ensure_state_dir
from reconciler.apply.units import LABEL, Rendered
from reconciler.errors import ApplyError
from reconciler.observe.journal import JournalEntry

__all__ = [
    "LOG_LIMIT",
    "ProcessExecutor",
    "Started",
    "Stopped",
    "identity_problem",
    "log_path",
]

LOG_LIMIT = 10 * 1024 * 1024  # bytes; a larger log is rotated when its instance starts
START_TOLERANCE_S = 0.05
POLL_S = 0.05


@dataclass(frozen=True)
class Started:
    pid: int
    start_time: float
    log: Path | None  # the process executor's log file; systemd: journalctl


@dataclass(frozen=True)
class Stopped:
    how: str  # "SIGTERM", "SIGKILL", "gone" (had exited), "not ours" (never signalled)
    detail: str = ""
    pids: tuple[int, ...] = ()  # every process signalled: the leader and its group's members


def log_path(state_dir: Path, unit: str) -> Path:
    return state_dir / "logs" / f"{unit}.log"


def _rotate(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size > LOG_LIMIT:
            os.replace(path, path.with_name(path.name + ".1"))


def identity_problem(entry: JournalEntry, proc: psutil.Process) -> str | None:
    """Why `proc` is not the journal's instance, or None when it is (pid + start time +
    label): a reused pid has another start time, a look-alike has no label."""
    try:
        started = proc.create_time()
        label = proc.environ().get(LABEL)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return "it has exited"
    except psutil.AccessDenied:
        return "its environment cannot be read (another user's process)"
    if abs(started - entry.start_time) > START_TOLERANCE_S:
        return f"pid {entry.pid} now belongs to a process started at another time"
    if label != entry.model:
        return f"pid {entry.pid} does not carry our label {LABEL}={entry.model}"
    return None


def _pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:
        return None
    return fd


def _wait_exit(pid: int, fd: int | None, timeout_s: float) -> bool:
    """Whether process `pid` exited within `timeout_s` (a zombie child counts as exited)."""
    deadline = time.monotonic() + timeout_s
    while True:
        _reap(pid)
        if fd is not None:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if poller.poll(int(POLL_S * 1000)):
                _reap(pid)
                return True
        else:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    return True
            except psutil.NoSuchProcess:
                return True
            time.sleep(POLL_S)
        if time.monotonic() >= deadline:
            return False


def _reap(pid: int) -> None:
    """Collect an exited child of this process (tests and the watcher start children)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _members(entry: JournalEntry) -> list[psutil.Process]:
    """What is left of the instance's process group: processes in it that carry our label
    for this model and started no earlier than it (a vLLM worker, say)."""
    out = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) != entry.pid or proc.pid == os.getpid():
                continue
            if proc.create_time() + START_TOLERANCE_S < entry.start_time:
                continue
            if proc.environ().get(LABEL) != entry.model:
                continue
        except (psutil.Error, OSError):
            continue
        out.append(proc)
    return out


class ProcessExecutor:
    """Starts and stops instances as detached process groups of ours."""

    name = "process"

    def __init__(self, state_dir: Path, *, stop_timeout_s: float = 10.0) -> None:
        self.state_dir = state_dir
        self.stop_timeout_s = stop_timeout_s

    def start(self, rendered: Rendered) -> Started:
        log = log_path(ensure_state_dir(self.state_dir), rendered.unit)
        log.parent.mkdir(mode=0o700, exist_ok=True)
        _rotate(log)
        env = {**os.environ, **rendered.env}  # our label (the variant) is in rendered.env
        try:
            with open(log, "ab") as out:
                os.chmod(log, 0o600)
                out.write(f"--- reconcile starts {rendered.unit}: {rendered.argv[0]}\n".encode())
                out.flush()
                proc = subprocess.Popen(
                    list(rendered.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=rendered.cwd or self.state_dir,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            raise ApplyError(
                f"{rendered.model}: cannot start {rendered.argv[0]} ({exc.strerror}); "
                f"see `reconcile render` for what would run"
            ) from None
        try:
            start_time = psutil.Process(proc.pid).create_time()
        except psutil.NoSuchProcess:
            start_time = time.time()
        return Started(proc.pid, start_time, log)

    def alive(self, entry: JournalEntry) -> bool:
        """The journal's instance still runs (and is still ours)."""
        try:
            proc = psutil.Process(entry.pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                _reap(entry.pid)
                return False
        except psutil.NoSuchProcess:
            return False
        return identity_problem(entry, proc) is None

    def stop(self, entry: JournalEntry) -> Stopped:
        """Stop the instance of `entry`, verified as ours right before each signal."""
        fd = _pidfd(entry.pid)
        try:
            try:
                proc = psutil.Process(entry.pid)
            except psutil.NoSuchProcess:
                return Stopped("gone", pids=(entry.pid,))
            why = identity_problem(entry, proc)
            if why == "it has exited":
                _reap(entry.pid)
                return Stopped("gone", pids=(entry.pid,))
            if why is not None:
                return Stopped("not ours", why)
            self._signal(entry, fd, signal.SIGTERM)
            if _wait_exit(entry.pid, fd, self.stop_timeout_s):
                left = _members(entry)
                for member in left:
                    with contextlib.suppress(psutil.Error):
                        member.kill()
                return Stopped(
                    "SIGTERM", f"{len(left)} leftover process(es) killed" if left else ""
                )
            self._signal(entry, fd, signal.SIGKILL)
            for member in _members(entry):
                with contextlib.suppress(psutil.Error):
                    member.kill()
            _wait_exit(entry.pid, fd, 5.0)
            return Stopped("SIGKILL", f"did not exit within {self.stop_timeout_s:g} s of SIGTERM")
        finally:
            if fd is not None:
                os.close(fd)

    def _signal(self, entry: JournalEntry, fd: int | None, sig: signal.Signals) -> None:
        """`sig` to the instance's group (it leads its own session), else to it alone; the
        identity is checked again right before (SIGKILL comes seconds after SIGTERM, and a
        pid freed in between may have been reused)."""
        if fd is not None and select.select([fd], [], [], 0)[0]:
            return  # the pidfd is readable: the instance has exited
        try:
            if identity_problem(entry, psutil.Process(entry.pid)) is not None:
                return
            group = os.getpgid(entry.pid)
        except (psutil.NoSuchProcess, ProcessLookupError):
            return
        with contextlib.suppress(ProcessLookupError):
            if group == entry.pid:
                os.killpg(group, sig)
            elif fd is not None:
                signal.pidfd_send_signal(fd, sig)
            else:
                os.kill(entry.pid, sig)

    def follow(self, entry: JournalEntry) -> JournalEntry | None:
        """A process that exited is gone: nothing restarts it behind our back."""
        return None

    def log_tail(self, unit: str, lines: int = 20) -> list[str]:
        path = log_path(self.state_dir, unit)
        try:
            with open(path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(size - 64 * 1024, 0))
                text = handle.read().decode(errors="replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]
