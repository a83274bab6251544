"""Reading the machine: NVML, the process table, the journal; snapshots and profiles.

The only part of the package that reads the machine (besides reading GGUF files). Importing
the package reads nothing and imports neither pynvml nor psutil. The values it produces live
outside it (`reconciler.state`, `reconciler.levels`), so the planner never imports it.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.config.loader import ProfileFile
    from reconciler.observe.observer import Observer
    from reconciler.observe.processes import ProcessTable
    from reconciler.state import ObservedState

__all__ = ["StateReader", "observe"]


class StateReader:
    """Where observed states come from, for as long as a command (or the watcher) runs: a
    snapshot file (read again on each call: a simulation may rewrite it), else a profile (read
    once), else the real machine through one `Observer`, made on the first observation and
    kept (NVML stays initialised, process facts stay cached), with the journal of what we
    started in `state_dir` read on each call. With `journal`, a snapshot or profile is a
    simulated machine that our real processes run on (`simulated.with_journal`): what
    `apply --profile` carries plans out on."""

    def __init__(
        self,
        *,
        observed: str | None = None,
        profile: str | None = None,
        state_dir: Path | None = None,
        nvml_module: ModuleType | Any | None = None,
        journal: bool = False,
    ) -> None:
        self.observed = observed
        self.profile = profile
        self.state_dir = state_dir
        self.journal = journal
        self._nvml_module = nvml_module
        self._observer: Observer | None = None
        self._profile: ProfileFile | None = None
        self._table: ProcessTable | None = None

    def observe(self) -> ObservedState:
        """What the machine looks like now."""
        # Imported here: the machine's readers are loaded only when the machine is to be read.
        from reconciler.config.loader import load_profile  # noqa: PLC0415
        from reconciler.observe.journal import (  # noqa: PLC0415
            JOURNAL,
            default_state_dir,
            read_journal,
        )
        from reconciler.observe.snapshot import from_profile, load_snapshot  # noqa: PLC0415

        journal_file = (self.state_dir or default_state_dir()) / JOURNAL
        if self.observed is not None or self.profile is not None:
            if self.observed is not None:
                simulated = load_snapshot(self.observed)
            else:
                if self._profile is None:
                    self._profile = load_profile(self.profile or "")
                simulated = from_profile(self._profile.spec, self._profile.name)
            if not self.journal:
                return simulated
            from reconciler.observe.processes import ProcessTable  # noqa: PLC0415
            from reconciler.observe.simulated import with_journal  # noqa: PLC0415

            self._table = self._table or ProcessTable()
            return with_journal(simulated, read_journal(journal_file), self._table)
        if self._observer is None:
            # Only the real machine needs NVML and psutil: a profile or a snapshot does not.
            from reconciler.observe.observer import Observer  # noqa: PLC0415

            self._observer = Observer(self._nvml_module)
        return self._observer.observe(read_journal(journal_file))


def observe(
    *, observed: str | None = None, profile: str | None = None, state_dir: Path | None = None
) -> ObservedState:
    """What the machine looks like, once: a snapshot file, else a profile, else the real
    machine (NVML and the process table, with the journal of what we started in `state_dir`)."""
    return StateReader(observed=observed, profile=profile, state_dir=state_dir).observe()
