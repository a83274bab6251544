"""The state-folder lock: one apply (or watcher) changes the machine at a time.

An exclusive `flock` on `<state folder>/lock`, held for the whole apply. A second apply
waits, saying who holds it, up to `--lock-timeout`, then gives up with one clear line. The
kernel drops the lock when its holder dies (`kill -9` included): there is never a stale lock
to remove by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from reconciler.apply.journal import ensure_state_dir
from reconciler.errors import ApplyError

__all__ = ["state_lock"]

POLL_S = 0.1


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return "another reconcile"
    return f"another reconcile (pid {pid})" if pid.isdigit() else "another reconcile"


@contextlib.contextmanager
def state_lock(
    state_dir: Path,
    *,
    timeout_s: float = 600.0,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the state folder's lock; wait up to `timeout_s` (0: do not wait)."""
    path = ensure_state_dir(state_dir) / "lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ApplyError(
            f"{path}: cannot open the state folder's lock ({exc.strerror}); use a state "
            "folder you may write (--state-dir, RECONCILER_STATE_DIR)"
        ) from None
    try:
        deadline = time.monotonic() + timeout_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                who = _holder(path)
                if time.monotonic() >= deadline:
                    raise ApplyError(
                        f"{state_dir}: {who} holds the state folder's lock; wait for it to "
                        "finish, or raise --lock-timeout"
                    ) from None
                if not told and on_wait is not None:
                    on_wait(f"waiting for {who}, which holds {path} ...")
                    told = True
                time.sleep(POLL_S)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
