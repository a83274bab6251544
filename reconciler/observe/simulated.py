"""A simulated machine with real processes: what `apply --profile` and `--observed` run on.

The GPUs come from a hardware profile or a snapshot; the instances come from the journal and
the process table, as on a real machine: each entry whose process still runs (same pid, same
start time) counts on its simulated GPUs with the memory its plan estimated. This is how the
tests, CI and a newcomer's demo carry plans out without a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.observe.journal import JournalEntry
from reconciler.observe.processes import ProcessTable
from reconciler.state import GpuProcess, ObservedState

__all__ = ["with_journal"]


def with_journal(
    state: ObservedState, journal: Sequence[JournalEntry], table: ProcessTable
) -> ObservedState:
    """`state` with the journal's instances on it: running ones hold their estimate on their
    simulated GPUs; the others are listed as gone."""
    gpus = {g.label: g for g in state.gpus}
    instances = []
    table.begin()
    for entry in journal:
        alive = table.alive(entry)
        info = table.info(entry.pid) if alive else None
        held: dict[str, int] = {}
        if alive:
            for label in entry.gpus:
                if label not in gpus:
                    continue
                mib = (entry.estimate_mib or {}).get(label, 0)
                held[label] = mib
                proc = GpuProcess(
                    pid=entry.pid,
                    used_mib=mib,
                    kind="compute",
                    name=info.name if info is not None else None,
                    owner="ours",
                    instance=entry.model,
                )
                gpus[label] = gpus[label].with_process(proc)
        instances.append(
            entry.instance(
                alive=alive, gpus=tuple(held), used_mib=sum(held.values()), used_by_gpu=held
            )
        )
    table.end()
    return state.model_copy(
        update={"gpus": tuple(gpus.values()), "instances": (*state.instances, *instances)}
    )
