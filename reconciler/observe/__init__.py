"""Reading the machine: NVML, the process table, the journal; snapshots and profiles.

The only part of the package that reads the machine (besides reading GGUF files). Importing
the package reads nothing and imports neither pynvml nor psutil. The values it produces live
outside it (`reconciler.state`, `reconciler.levels`), so the planner never imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.state import ObservedState

__all__ = ["observe"]


def observe(
    *, observed: str | None = None, profile: str | None = None, state_dir: Path | None = None
) -> ObservedState:
    """What the machine looks like: a snapshot file, else a profile, else the real machine
    (NVML and the process table, with the journal of what we started in `state_dir`)."""
    # Imported here: the machine's readers are loaded only when the machine is to be read.
    from reconciler.config.loader import load_profile  # noqa: PLC0415
    from reconciler.observe.journal import default_state_dir, read_journal  # noqa: PLC0415
    from reconciler.observe.observer import Observer  # noqa: PLC0415
    from reconciler.observe.snapshot import from_profile, load_snapshot  # noqa: PLC0415

    if observed is not None:
        return load_snapshot(observed)
    if profile is not None:
        loaded = load_profile(profile)
        return from_profile(loaded.spec, loaded.name)
    journal = read_journal((state_dir or default_state_dir()) / "journal.json")
    return Observer().observe(journal)
