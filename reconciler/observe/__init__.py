"""Reading the machine: NVML, the process table, the journal; snapshots and profiles.

The only part of the package that reads the machine (besides reading GGUF files).
"""

from __future__ import annotations

from pathlib import Path

from reconciler.observe.journal import default_state_dir, read_journal
from reconciler.observe.observer import Observer
from reconciler.observe.snapshot import from_profile, load_snapshot
from reconciler.observe.state import ObservedState
from reconciler.spec.loader import load_profile

__all__ = ["observe"]


def observe(
    *, observed: str | None = None, profile: str | None = None, state_dir: Path | None = None
) -> ObservedState:
    """What the machine looks like: a snapshot file, else a profile, else the real machine."""
    if observed is not None:
        return load_snapshot(observed)
    if profile is not None:
        loaded = load_profile(profile)
        return from_profile(loaded.spec, loaded.name)
    journal = read_journal((state_dir or default_state_dir()) / "journal.json")
    return Observer().observe(journal)
