"""Writing the journal: what we started, written atomically after every step.

The journal is the only record that a process is ours (with its pid, start time and label):
apply writes an entry right after a start, before waiting for health, and removes it right
after a stop, so that Ctrl-C or `kill -9` of apply at any point leaves a journal the next run
reconciles from: no orphan, no duplicate. A reader never sees half a file (temporary file,
fsync, rename), and the folder is private (0700), the file 0600.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from reconciler.atomicfile import write_atomically
from reconciler.errors import ApplyError
from reconciler.observe.journal import JOURNAL, Journal, JournalEntry, read_journal

__all__ = [
    "boot_id",
    "ensure_state_dir",
    "update_journal",
    "write_journal",
    "write_private",
]


def ensure_state_dir(state_dir: Path) -> Path:
    """The state folder, made private (0700) when we create it."""
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ApplyError(
            f"{state_dir}: cannot create the state folder ({exc.strerror}); set "
            "RECONCILER_STATE_DIR or --state-dir to a folder you may write"
        ) from None
    return state_dir


def write_private(path: Path, text: str, what: str) -> None:
    """`text` to `path` whole or not at all (a temporary file beside it, fsync, rename), mode
    0600: a reader never sees half of it. `what` names the file in the error."""
    try:
        write_atomically(path, text, 0o600)
    except OSError as exc:
        raise ApplyError(f"{path}: cannot write {what} ({exc.strerror})") from None


def write_journal(state_dir: Path, entries: Sequence[JournalEntry]) -> None:
    path = ensure_state_dir(state_dir) / JOURNAL
    text = Journal(entries=tuple(entries)).model_dump_json(indent=2) + "\n"
    write_private(path, text, "the journal")


def update_journal(
    state_dir: Path, change: Callable[[list[JournalEntry]], list[JournalEntry]]
) -> list[JournalEntry]:
    """Read, change and write the journal (the caller holds the state-folder lock)."""
    entries = change(list(read_journal(state_dir / JOURNAL)))
    write_journal(state_dir, entries)
    return entries


def boot_id() -> str | None:
    """This boot's id (Linux), so that an entry from before a reboot is known as such."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None
