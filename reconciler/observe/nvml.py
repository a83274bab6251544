"""NVML (nvidia-ml-py): the GPUs and the processes on them.

Initialised once, lazily; the `pynvml` module is injectable (tests pass a fake). Errors are
mapped so that a person can act on them, never a traceback:
- no `pynvml` package, no NVML library or no driver: "no NVIDIA GPU", a normal state (CPU-only
  plans), said in `note`;
- a field the GPU does not support: `None` for that field only;
- a field we may not read (no permission) or another NVML error on one field: `None` for that
  field, and a line in `notes` saying which GPU and what;
- a GPU that fell off the bus: listed as lost, the others still observed;
- a GPU that cannot be read at all (no handle): left out, with a line in `notes`.
Static facts (name, UUID, compute capability, bus id, power limit) are read once per device.
Which process is whose is decided by `processes.ProcessTable`, not here.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from reconciler.observe.text import clean_text
from reconciler.state import GpuState, ProcessKind

__all__ = ["CLOCK_EVENTS", "NOT_AVAILABLE", "Nvml", "RawProcess"]

T = TypeVar("T")
RawProcess = tuple[int, int | None, ProcessKind]  # (pid, MiB or None, which list)
Found = list[tuple[GpuState, list[RawProcess]]]
MIB = 1024 * 1024
NOT_AVAILABLE = (1 << 64) - 1  # NVML_VALUE_NOT_AVAILABLE for unsigned long long
CLOCK_EVENTS = {  # nvmlClocksEventReason* bits, by their short names
    0x1: "idle",
    0x2: "app-clocks",
    0x4: "sw-power-cap",
    0x8: "hw-slowdown",
    0x10: "sync-boost",
    0x20: "sw-thermal",
    0x40: "hw-thermal",
    0x80: "hw-power-brake",
    0x100: "display-clocks",
    0x200: "board-limit",
    0x400: "reliability",
}
WHAT = {  # NVML calls, as the notes name them
    "nvmlDeviceGetCount": "the number of GPUs",
    "nvmlSystemGetDriverVersion": "the driver version",
    "nvmlDeviceGetComputeRunningProcesses": "the compute process list",
    "nvmlDeviceGetGraphicsRunningProcesses": "the graphics process list",
    "nvmlDeviceGetMemoryInfo": "memory use",
    "nvmlDeviceGetPowerUsage": "power draw",
    "nvmlDeviceGetEnforcedPowerLimit": "the power limit",
    "nvmlDeviceGetTemperature": "temperature",
    "nvmlDeviceGetUtilizationRates": "utilisation",
    "nvmlDeviceGetCurrentClocksEventReasons": "clock events",
}


def _once_each(procs: list[RawProcess]) -> list[RawProcess]:
    """A process in both the compute and the graphics list (a CUDA program that also draws)
    is one process: listed once, under the first list, with the larger figure NVML gave (both
    lists report the process's whole use of the GPU)."""
    first: dict[int, RawProcess] = {}
    for pid, mib, kind in procs:
        seen = first.get(pid)
        if seen is None:
            first[pid] = (pid, mib, kind)
        elif mib is not None and (seen[1] is None or mib > seen[1]):
            first[pid] = (pid, mib, seen[2])
    return list(first.values())


class _Lost(Exception):
    """A GPU became unreachable while we were reading it."""


def _import_pynvml() -> Any:
    """The pynvml module, or None where nvidia-ml-py is not installed."""
    try:
        import pynvml  # noqa: PLC0415 - only when a GPU is to be observed
    except ImportError:
        return None
    return pynvml


class Nvml:
    """A lazily initialised view of NVML; `module` is pynvml or a fake with its interface."""

    def __init__(self, module: ModuleType | Any | None = None) -> None:
        self._module = module
        self._ready = False
        self.note: str | None = None  # why no GPU is seen (set once, when NVML cannot start)
        self.notes: list[str] = []  # what this observation could not read
        self.driver: str | None = None
        self._static: dict[tuple[int, int | None], dict[str, Any]] = {}
        self._where = "NVML"  # what the notes of the current call are about

    @property
    def nv(self) -> Any:
        return self._module

    def start(self) -> bool:
        """Initialise NVML once; False (with `note` saying why) when there is no GPU to see."""
        if self._ready:
            return True
        if self.note is not None:
            return False
        if self._module is None:
            self._module = _import_pynvml()
            if self._module is None:
                self.note = "no NVIDIA GPU: the nvidia-ml-py package (pynvml) is not installed"
                return False
        nv = self.nv
        try:
            nv.nvmlInit()
        except nv.NVMLError_LibraryNotFound:
            self.note = "no NVIDIA GPU: the NVML library (libnvidia-ml) is not installed"
            return False
        except nv.NVMLError_DriverNotLoaded:
            self.note = "no NVIDIA GPU: the NVIDIA driver is not loaded"
            return False
        except nv.NVMLError_NoPermission:
            self.note = "NVML refused access (no permission); run as a user who may use the GPU"
            return False
        except nv.NVMLError as exc:
            self.note = f"NVML could not start: {exc}"
            return False
        self._ready = True
        self.driver = _text(self._field(nv.nvmlSystemGetDriverVersion))
        return True

    def _field(self, fn: Callable[..., T], *args: Any) -> T | None:
        """One NVML call: None where unsupported or not permitted; `_Lost` when the GPU is."""
        nv = self.nv
        try:
            return fn(*args)
        except (nv.NVMLError_NotSupported, nv.NVMLError_NotFound):
            return None
        except nv.NVMLError_GpuIsLost:
            raise _Lost from None
        except nv.NVMLError_NoPermission:
            self._note(fn, "no permission; run as a user who may use the GPU")
            return None
        except nv.NVMLError as exc:
            self._note(fn, f"NVML error: {exc}")
            return None

    def _note(self, fn: Callable[..., Any], why: str) -> None:
        name = getattr(fn, "__name__", "?")
        self.notes.append(f"{self._where}: {WHAT.get(name, name)} not read ({why})")

    def gpus(self) -> Found:
        """Every GPU (MIG devices as their own entries) with its raw (pid, MiB, kind) list."""
        self.notes = []
        if not self.start():
            return []
        out: Found = []
        for index in range(self._count()):
            out.extend(self._one(index))
        return out

    def _count(self) -> int:
        self._where = "NVML"
        try:
            return self._field(self.nv.nvmlDeviceGetCount) or 0
        except _Lost:
            self.notes.append("NVML: a GPU is lost; check `dmesg` and reboot")
            return 0

    def _one(self, index: int) -> Found:
        nv = self.nv
        self._where = f"GPU {index}"
        try:
            handle = nv.nvmlDeviceGetHandleByIndex(index)
            state, procs = self._read(handle, index, None)
            out = [(state, procs)]
            if state.mig_mode:
                out += self._mig(handle, index)
        except (_Lost, nv.NVMLError_GpuIsLost):
            return [(self._lost(index), [])]
        except nv.NVMLError as exc:
            self.notes.append(f"GPU {index}: cannot be read ({exc}); left out")
            return []
        return out

    def _lost(self, index: int) -> GpuState:
        static = self._static.get((index, None), {})
        return GpuState(
            index=index,
            uuid=static.get("uuid", f"unknown-{index}"),
            name=static.get("name", "unknown"),
            memory_total_mib=0,
            memory_used_mib=0,
            memory_free_mib=0,
            compute_capability=static.get("compute_capability"),
            pci_bus_id=static.get("pci_bus_id"),
            lost=True,
        )

    def _mig(self, handle: Any, index: int) -> Found:
        nv = self.nv
        out = []
        for mig in range(self._field(nv.nvmlDeviceGetMaxMigDeviceCount, handle) or 0):
            self._where = f"GPU {index}/mig{mig}"
            child = self._field(nv.nvmlDeviceGetMigDeviceHandleByIndex, handle, mig)
            if child is not None:
                out.append(self._read(child, index, mig))
        return out

    def _static_facts(self, handle: Any, key: tuple[int, int | None]) -> dict[str, Any]:
        facts = self._static.get(key)
        if facts is None:
            nv = self.nv
            cc = self._field(nv.nvmlDeviceGetCudaComputeCapability, handle)
            pci = self._field(nv.nvmlDeviceGetPciInfo, handle)
            limit = self._field(nv.nvmlDeviceGetEnforcedPowerLimit, handle)
            facts = {
                "uuid": _text(self._field(nv.nvmlDeviceGetUUID, handle)) or f"unknown-{key}",
                "name": _text(self._field(nv.nvmlDeviceGetName, handle)) or "unknown",
                "compute_capability": f"{cc[0]}.{cc[1]}" if cc else None,
                "pci_bus_id": _text(getattr(pci, "busId", None)),
                "power_limit_w": None if limit is None else limit / 1000,
            }
            self._static[key] = facts
        return facts

    def _read(self, handle: Any, index: int, mig: int | None) -> tuple[GpuState, list[RawProcess]]:
        nv = self.nv
        static = self._static_facts(handle, (index, mig))
        memory = self._memory(handle)
        util = self._field(nv.nvmlDeviceGetUtilizationRates, handle)
        temp = self._field(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU)
        power = self._field(nv.nvmlDeviceGetPowerUsage, handle)
        events = self._field(nv.nvmlDeviceGetCurrentClocksEventReasons, handle)
        mode = self._field(nv.nvmlDeviceGetMigMode, handle) if mig is None else None
        procs: list[RawProcess] = []
        lists: tuple[tuple[ProcessKind, Any], ...] = (
            ("compute", nv.nvmlDeviceGetComputeRunningProcesses),
            ("graphics", nv.nvmlDeviceGetGraphicsRunningProcesses),
        )
        for kind, fn in lists:
            for p in self._field(fn, handle) or []:
                used = getattr(p, "usedGpuMemory", None)
                mib = None if used is None or used >= NOT_AVAILABLE else int(used) // MIB
                procs.append((int(p.pid), mib, kind))
        procs = _once_each(procs)
        state = GpuState(
            index=index,
            mig=mig,
            memory_total_mib=memory[0],
            memory_used_mib=memory[1],
            memory_free_mib=memory[2],
            memory_reserved_mib=memory[3],
            utilization_pct=None if util is None else int(util.gpu),
            temperature_c=None if temp is None else int(temp),
            power_w=None if power is None else power / 1000,
            clock_events=tuple(n for bit, n in CLOCK_EVENTS.items() if events and events & bit),
            mig_mode=None if mode is None else bool(mode[0]),
            **static,
        )
        return state, procs

    def _memory(self, handle: Any) -> tuple[int, int, int, int | None]:
        """(total, used, free, reserved) MiB: the v2 query where the driver has it, else v1.

        Unknown memory reads as 0 total, so that nothing is ever placed on such a GPU.
        """
        nv = self.nv
        try:
            info = nv.nvmlDeviceGetMemoryInfo(handle, version=nv.nvmlMemory_v2)
        except nv.NVMLError_GpuIsLost:
            raise _Lost from None
        except (
            nv.NVMLError,  # not supported, an old driver, no permission (a MIG parent): try v1
            TypeError,  # an old nvidia-ml-py without the `version` argument
            AttributeError,  # ... or without nvmlMemory_v2
        ):
            info = self._field(nv.nvmlDeviceGetMemoryInfo, handle)
        if info is None:
            return 0, 0, 0, None
        reserved = getattr(info, "reserved", None)
        return (
            int(info.total) // MIB,
            int(info.used) // MIB,
            int(info.free) // MIB,
            None if reserved is None else int(reserved) // MIB,
        )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return clean_text(value if isinstance(value, bytes) else str(value))
