"""What was observed: GPUs, their processes (ours or foreign), the host, our instances.

A frozen value. It serialises to JSON (the `reconcile status --json` format) and reads back
from JSON or YAML (`--observed FILE`); a hardware profile becomes one too. Optional fields
are `None` where the driver does not say (never NaN, never "N/A").
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import Field

from reconciler.frozen import Frozen
from reconciler.launch import Launch

ProcessKind = Literal["compute", "graphics"]

__all__ = [
    "GpuProcess",
    "GpuState",
    "HostState",
    "Instance",
    "ObservedState",
    "ProcessKind",
]

FINGERPRINT_GRAIN_MIB = 256  # memory moves a little all the time; plans care about big moves


class GpuProcess(Frozen):
    pid: int
    used_mib: int | None = Field(description="None where the driver does not say (WDDM, WSL).")
    kind: ProcessKind
    name: str | None = None
    user: str | None = None
    cmdline: tuple[str, ...] = ()
    owner: Literal["ours", "foreign"] = "foreign"
    instance: str | None = Field(None, description="The model, for a process of ours.")


class GpuState(Frozen):
    index: int
    mig: int | None = Field(None, description="MIG device index inside GPU `index`.")
    uuid: str
    name: str
    memory_total_mib: int
    memory_used_mib: int
    memory_free_mib: int
    memory_reserved_mib: int | None = None
    utilization_pct: int | None = None
    temperature_c: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    clock_events: tuple[str, ...] = ()
    compute_capability: str | None = None
    mig_mode: bool | None = None
    pci_bus_id: str | None = None
    lost: bool = Field(False, description="The GPU fell off the bus (NVML: GPU is lost).")
    processes: tuple[GpuProcess, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.index}" if self.mig is None else f"{self.index}/mig{self.mig}"

    @property
    def foreign_mib(self) -> int:
        return sum(p.used_mib or 0 for p in self.processes if p.owner == "foreign")

    def with_process(self, proc: GpuProcess, mib: int | None = None) -> GpuState:
        """This GPU with one more process holding `mib` (default: what it reports; a driver
        that reports nothing per process still shows the memory as used)."""
        held = proc.used_mib or 0 if mib is None else mib
        return self.model_copy(
            update={
                "processes": (*self.processes, proc),
                "memory_used_mib": self.memory_used_mib + held,
                "memory_free_mib": max(self.memory_free_mib - held, 0),
            }
        )


class HostState(Frozen):
    ram_total_mib: int
    ram_available_mib: int
    cpus: int


class Instance(Frozen):
    """A model server the reconciler started."""

    model: str
    pid: int
    start_time: float
    unit: str | None = None
    state: Literal["running", "gone"] = "running"
    source: Literal["journal", "label"] = "journal"
    gpus: tuple[str, ...] = Field((), description="Labels of the GPUs it holds memory on.")
    used_mib: int = Field(0, description="GPU memory of it and its children, all GPUs.")
    used_by_gpu: dict[str, int] = Field(
        default_factory=dict,
        description="Measured MiB per GPU label; a GPU of `gpus` missing here is one where "
        "the driver does not say (WDDM, WSL): it is charged the estimate.",
    )
    launch: Launch | None = Field(
        None, description="The launch it was started with (from the journal)."
    )
    estimate_mib: dict[str, int] | None = Field(
        None, description="What the plan that started it estimated, per GPU label and host."
    )

    @property
    def adopted(self) -> bool:
        """Whether we may signal it: started by us and in the journal (pid + start time +
        label), not merely carrying our label."""
        return self.source == "journal"


class ObservedState(Frozen):
    format_version: Literal[1] = 1
    source: str = Field(
        description='Where it came from: "nvml", "snapshot" (written by hand or a simulation) '
        'or "profile:<name>". A snapshot read back keeps the source it was saved with.'
    )
    observed_at: str = Field("", description="ISO 8601 time of the observation.")
    driver: str | None = None
    gpu_note: str | None = Field(None, description="Why no GPU is seen, said plainly.")
    notes: tuple[str, ...] = Field(
        (), description="What could not be read (a field not permitted, a GPU left out)."
    )
    gpus: tuple[GpuState, ...] = ()
    host: HostState
    instances: tuple[Instance, ...] = ()

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def fingerprint(self) -> str:
        """A stable hash of what placement depends on (not timestamps, heat or load)."""
        grain = FINGERPRINT_GRAIN_MIB
        content = {
            "gpus": [
                {
                    "id": [g.index, g.mig, g.uuid, g.memory_total_mib, g.lost],
                    "processes": sorted(
                        (p.pid, p.kind, p.owner, (p.used_mib or 0) // grain) for p in g.processes
                    ),
                }
                for g in self.gpus
            ],
            "instances": sorted((i.model, i.pid, i.start_time, i.state) for i in self.instances),
        }
        text = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]
