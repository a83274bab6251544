"""The journal: what the reconciler started (written by apply, read here).

Each entry names the model, the pid and the process start time (so a reused pid is never
mistaken for ours), the unit and the GPUs. It lives in the state directory
(`$XDG_STATE_HOME/reconciler`, default `~/.local/state/reconciler`), mode 0700.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import ValidationError

from reconciler.errors import ObservationError
from reconciler.frozen import Frozen
from reconciler.launch import Launch

__all__ = ["JournalEntry", "default_state_dir", "read_journal"]


class JournalEntry(Frozen):
    model: str
    pid: int
    start_time: float
    unit: str | None = None
    gpus: tuple[int, ...] = ()
    port: int | None = None
    launch: Launch | None = None  # what it was started with, to see what changed
    estimate_mib: dict[str, int] | None = None  # the plan's estimate per GPU label and host


class _Journal(Frozen):
    format_version: int = 1
    entries: tuple[JournalEntry, ...] = ()


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "reconciler"


def read_journal(path: Path) -> tuple[JournalEntry, ...]:
    """The entries of the journal at `path`; none when there is no journal yet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ()
    except OSError as exc:
        raise ObservationError(f"{path}: cannot read the journal: {exc.strerror}") from None
    try:
        return _Journal.model_validate(json.loads(text)).entries
    except (json.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise ObservationError(
            f"{path}: the journal is damaged ({first}); move it aside to start afresh, "
            "and stop by hand what it listed"
        ) from None
