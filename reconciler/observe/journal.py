"""The journal: what the reconciler started (written by apply, read here).

Each entry names the model, the pid and the process start time (so a reused pid is never
mistaken for ours), the unit and the GPUs. It lives in the state directory
(`$XDG_STATE_HOME/reconciler`, default `~/.local/state/reconciler`), mode 0700.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from reconciler.errors import ObservationError
from reconciler.frozen import Frozen
from reconciler.launch import Launch
from reconciler.state import Instance

__all__ = ["JOURNAL", "Journal", "JournalEntry", "default_state_dir", "read_journal"]

JOURNAL = "journal.json"


class JournalEntry(Frozen):
    model: str  # the entry that runs (a model or one of its fallbacks); also its label
    pid: int
    start_time: float
    unit: str | None = None
    gpus: tuple[str, ...] = ()  # GPU labels, as NVML numbers them
    port: int | None = None
    launch: Launch | None = None  # what it was started with, to see what changed
    estimate_mib: dict[str, int] | None = None  # the plan's estimate per GPU label and host
    executor: Literal["process", "systemd"] = "process"
    boot_id: str | None = None  # the boot it was started in
    log: str | None = None  # its log file (process executor)
    measured_mib: dict[str, int] | None = None  # what NVML measured once it was ready
    started_at: str | None = None  # ISO 8601

    def instance(
        self, *, alive: bool, gpus: tuple[str, ...], used_mib: int, used_by_gpu: dict[str, int]
    ) -> Instance:
        """What this entry is on the machine: running (on `gpus`, holding `used_mib`, per GPU
        `used_by_gpu` where the driver says) or gone. The observer measures the memory; a
        simulation charges the estimate."""
        return Instance(
            model=self.model,
            pid=self.pid,
            start_time=self.start_time,
            unit=self.unit,
            state="running" if alive else "gone",
            source="journal",
            gpus=gpus if alive else (),
            used_mib=used_mib,
            used_by_gpu=used_by_gpu,
            launch=self.launch,
            estimate_mib=self.estimate_mib,
        )


class Journal(Frozen):
    format_version: int = 1
    entries: tuple[JournalEntry, ...] = ()


def default_state_dir() -> Path:
    """$RECONCILER_STATE_DIR, else $XDG_STATE_HOME/reconciler (~/.local/state/reconciler)."""
    explicit = os.environ.get("RECONCILER_STATE_DIR")
    if explicit:
        return Path(explicit)
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
        return Journal.model_validate(json.loads(text)).entries
    except (json.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise ObservationError(
            f"{path}: the journal is damaged ({first}); move it aside to start afresh, "
            "and stop by hand what it listed"
        ) from None
