"""One observation of the machine: NVML's GPUs, attributed processes, host, our instances."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import psutil

from reconciler.observe.journal import JournalEntry
from reconciler.observe.nvml import Nvml
from reconciler.observe.processes import ProcessTable
from reconciler.observe.state import GpuProcess, GpuState, HostState, Instance, ObservedState

__all__ = ["Observer", "host_state"]

MIB = 1024 * 1024


def host_state() -> HostState:
    memory = psutil.virtual_memory()
    return HostState(
        ram_total_mib=int(memory.total) // MIB,
        ram_available_mib=int(memory.available) // MIB,
        cpus=psutil.cpu_count() or 1,
    )


class Observer:
    """Observes repeatedly and cheaply: NVML stays initialised, process facts are cached."""

    def __init__(self, nvml_module: ModuleType | Any | None = None) -> None:
        self.nvml = Nvml(nvml_module)
        self.table = ProcessTable()

    def observe(self, journal: Sequence[JournalEntry] = ()) -> ObservedState:
        gpus: list[GpuState] = []
        held: dict[str, tuple[set[str], int]] = {}  # model -> (GPU labels, MiB)
        entries = {e.pid: e for e in journal}
        self.table.begin()
        for state, raw in self.nvml.gpus():
            processes = []
            for pid, mib, kind in raw:
                info = self.table.info(pid)
                if info is None:
                    continue  # exited between NVML's list and now: its memory is going too
                model = self.table.owner(pid, entries)
                processes.append(
                    GpuProcess.model_construct(  # our own values: no need to validate again
                        pid=pid,
                        used_mib=mib,
                        kind=kind,
                        name=info.name,
                        user=info.user,
                        cmdline=info.cmdline,
                        owner="ours" if model else "foreign",
                        instance=model,
                    )
                )
                if model:
                    labels, total = held.get(model, (set(), 0))
                    held[model] = (labels | {state.label}, total + (mib or 0))
            gpus.append(state.model_copy(update={"processes": tuple(processes)}))
        instances = self._instances(journal, held, gpus)
        self.table.end()
        return ObservedState(
            source="nvml",
            observed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            driver=self.nvml.driver,
            gpu_note=self.nvml.note,
            gpus=tuple(gpus),
            host=host_state(),
            instances=instances,
        )

    def _instances(
        self,
        journal: Sequence[JournalEntry],
        held: dict[str, tuple[set[str], int]],
        gpus: list[GpuState],
    ) -> tuple[Instance, ...]:
        out = []
        for entry in journal:
            alive = self.table.alive(entry)
            labels, mib = held.get(entry.model, (set(), 0)) if alive else (set(), 0)
            out.append(
                Instance(
                    model=entry.model,
                    pid=entry.pid,
                    start_time=entry.start_time,
                    unit=entry.unit,
                    state="running" if alive else "gone",
                    source="journal",
                    gpus=tuple(sorted(labels)),
                    used_mib=mib,
                    launch=entry.launch,
                )
            )
        journaled = {e.model for e in journal}
        for gpu in gpus:
            for p in gpu.processes:
                if p.instance and p.instance not in journaled:
                    journaled.add(p.instance)
                    info = self.table.info(p.pid)
                    labels, mib = held[p.instance]
                    out.append(
                        Instance(
                            model=p.instance,
                            pid=p.pid,
                            start_time=info.start_time if info else 0.0,
                            source="label",
                            gpus=tuple(sorted(labels)),
                            used_mib=mib,
                        )
                    )
        return tuple(out)
