"""One observation of the machine: NVML's GPUs, attributed processes, host, our instances."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import psutil

from reconciler.observe.journal import JournalEntry
from reconciler.observe.nvml import Nvml, RawProcess
from reconciler.observe.processes import Owner, ProcessTable
from reconciler.state import GpuProcess, GpuState, HostState, Instance, ObservedState

__all__ = ["Observer", "host_state"]

MIB = 1024 * 1024


def host_state() -> HostState:
    memory = psutil.virtual_memory()
    return HostState(
        ram_total_mib=int(memory.total) // MIB,
        ram_available_mib=int(memory.available) // MIB,
        cpus=psutil.cpu_count() or 1,
    )


class _Held:
    """What one instance of ours holds, gathered over the GPUs."""

    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self.gpus: set[str] = set()
        self.mib = 0
        self.by_gpu: dict[str, int] = {}  # measured, where the driver says


class Observer:
    """Observes repeatedly and cheaply: NVML stays initialised, process facts are cached."""

    def __init__(self, nvml_module: ModuleType | Any | None = None) -> None:
        self.nvml = Nvml(nvml_module)
        self.table = ProcessTable()

    def observe(self, journal: Iterable[JournalEntry] = ()) -> ObservedState:
        """The machine now; `journal` is what the reconciler started (see `journal.py`)."""
        entries = tuple(journal)
        by_pid: dict[int, list[JournalEntry]] = {}
        for entry in entries:
            by_pid.setdefault(entry.pid, []).append(entry)
        held: dict[str, _Held] = {}  # model -> what its processes hold
        self.table.begin()
        gpus = [
            state.model_copy(update={"processes": self._attribute(state, raw, by_pid, held)})
            for state, raw in self.nvml.gpus()
        ]
        instances = self._instances(entries, held)
        self.table.end()
        return ObservedState(
            source="nvml",
            observed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            driver=self.nvml.driver,
            gpu_note=self.nvml.note,
            notes=tuple(dict.fromkeys(self.nvml.notes)),
            gpus=tuple(gpus),
            host=host_state(),
            instances=instances,
        )

    def _attribute(
        self,
        gpu: GpuState,
        raw: list[RawProcess],
        journal: dict[int, list[JournalEntry]],
        held: dict[str, _Held],
    ) -> tuple[GpuProcess, ...]:
        processes = []
        for pid, mib, kind in raw:
            info = self.table.info(pid)
            if info is None:
                continue  # exited between NVML's list and now: dropped (see processes.py)
            owner = self.table.owner(pid, journal)
            processes.append(
                GpuProcess.model_construct(  # our own values: no need to validate again
                    pid=pid,
                    used_mib=mib,
                    kind=kind,
                    name=info.name,
                    user=info.user,
                    cmdline=info.cmdline,
                    owner="foreign" if owner is None else "ours",
                    instance=None if owner is None else owner.model,
                )
            )
            if owner is not None:
                item = held.setdefault(owner.model, _Held(owner))
                item.gpus.add(gpu.label)
                item.mib += mib or 0
                if mib is not None:
                    item.by_gpu[gpu.label] = item.by_gpu.get(gpu.label, 0) + mib
        return tuple(processes)

    def _instances(
        self, journal: tuple[JournalEntry, ...], held: dict[str, _Held]
    ) -> tuple[Instance, ...]:
        out = []
        running = set()
        for entry in journal:
            alive = self.table.alive(entry)
            if alive:
                running.add(entry.model)
            item = held.get(entry.model) if alive else None
            out.append(
                entry.instance(
                    alive=alive,
                    gpus=() if item is None else tuple(sorted(item.gpus)),
                    used_mib=0 if item is None else item.mib,
                    used_by_gpu={} if item is None else dict(item.by_gpu),
                )
            )
        for model, item in held.items():
            if model not in running:  # found by its label alone
                out.append(
                    Instance(
                        model=model,
                        pid=item.owner.pid,
                        start_time=item.owner.start_time,
                        source="label",
                        gpus=tuple(sorted(item.gpus)),
                        used_mib=item.mib,
                        used_by_gpu=dict(item.by_gpu),
                    )
                )
        return tuple(out)
