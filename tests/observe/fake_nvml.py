"""A fake NVML module: the subset of pynvml the adapter calls, raising pynvml's real errors.

Each scenario is a list of `FakeGpu`; a field named in `unsupported` raises NotSupported, one
in `denied` raises NoPermission, one in `failing` raises the NVML error of the given code, and a
GPU marked `lost` raises GpuIsLost on every call (`no_handle`: its handle cannot be had).
Errors are made as pynvml makes them, `pynvml.NVMLError(code)`, which gives the real subclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml

MIB = 1024 * 1024


@dataclass
class FakeGpu:
    name: str = "NVIDIA GeForce RTX 4090"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    total_mib: int = 24564
    used_mib: int = 1000
    reserved_mib: int = 300
    temperature: int = 45
    power_mw: int = 80_000
    limit_mw: int = 450_000
    util: int = 5
    cc: tuple[int, int] = (8, 9)
    events: int = 0x1
    compute: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, bytes)
    graphics: list[tuple[int, int | None]] = field(default_factory=list)
    unsupported: set[str] = field(default_factory=set)
    denied: set[str] = field(default_factory=set)
    failing: dict[str, int] = field(default_factory=dict)  # field -> NVML_ERROR_* code
    lost: bool = False
    no_handle: int | None = None  # NVML_ERROR_* code of nvmlDeviceGetHandleByIndex
    mig: list[FakeGpu] | None = None
    v2: bool = True


class FakeNvml:
    NVMLError = pynvml.NVMLError
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    nvmlMemory_v2 = pynvml.nvmlMemory_v2

    def __init__(self, gpus: list[FakeGpu], init_error: int | None = None) -> None:
        self.devices = gpus
        self.init_error = init_error
        self.calls = 0
        for name in dir(pynvml):
            if name.startswith("NVMLError_"):
                setattr(self, name, getattr(pynvml, name))

    # --- helpers -------------------------------------------------------------------------
    def _check(self, gpu: FakeGpu, fn: str) -> None:
        self.calls += 1
        if gpu.lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        if fn in gpu.unsupported:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if fn in gpu.denied:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
        if fn in gpu.failing:
            raise pynvml.NVMLError(gpu.failing[fn])

    # --- the pynvml interface ----------------------------------------------------------------
    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)

    def nvmlSystemGetDriverVersion(self) -> str:
        return "580.159.04"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        gpu = self.devices[index]
        if gpu.lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        if gpu.no_handle is not None:
            raise pynvml.NVMLError(gpu.no_handle)
        return gpu

    def nvmlDeviceGetUUID(self, gpu: FakeGpu) -> str:
        self._check(gpu, "uuid")
        return gpu.uuid

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> str:
        self._check(gpu, "name")
        return gpu.name

    def nvmlDeviceGetCudaComputeCapability(self, gpu: FakeGpu) -> tuple[int, int]:
        self._check(gpu, "cc")
        return gpu.cc

    def nvmlDeviceGetPciInfo(self, gpu: FakeGpu) -> Any:
        self._check(gpu, "pci")
        return SimpleNamespace(busId=b"00000000:01:00.0")

    def nvmlDeviceGetEnforcedPowerLimit(self, gpu: FakeGpu) -> int:
        self._check(gpu, "limit")
        return gpu.limit_mw

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu, version: int | None = None) -> Any:
        self._check(gpu, "memory")
        total, used = gpu.total_mib * MIB, gpu.used_mib * MIB
        if version is not None:
            if not gpu.v2:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
            reserved = gpu.reserved_mib * MIB
            return SimpleNamespace(
                total=total, used=used, free=total - used - reserved, reserved=reserved
            )
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu) -> Any:
        self._check(gpu, "util")
        return SimpleNamespace(gpu=gpu.util, memory=0)

    def nvmlDeviceGetTemperature(self, gpu: FakeGpu, sensor: int) -> int:
        self._check(gpu, "temperature")
        return gpu.temperature

    def nvmlDeviceGetPowerUsage(self, gpu: FakeGpu) -> int:
        self._check(gpu, "power")
        return gpu.power_mw

    def nvmlDeviceGetCurrentClocksEventReasons(self, gpu: FakeGpu) -> int:
        self._check(gpu, "events")
        return gpu.events

    def nvmlDeviceGetMigMode(self, gpu: FakeGpu) -> tuple[int, int]:
        self._check(gpu, "mig")
        return (1, 1) if gpu.mig is not None else (0, 0)

    def nvmlDeviceGetMaxMigDeviceCount(self, gpu: FakeGpu) -> int:
        self._check(gpu, "mig")
        return 7 if gpu.mig is not None else 0  # the slots, not the devices made (as NVML)

    def nvmlDeviceGetMigDeviceHandleByIndex(self, gpu: FakeGpu, index: int) -> FakeGpu:
        self._check(gpu, "mig")
        if index >= len(gpu.mig or []):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)  # an empty slot
        return (gpu.mig or [])[index]

    def nvmlDeviceGetComputeRunningProcesses(self, gpu: FakeGpu) -> list[Any]:
        self._check(gpu, "processes")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in gpu.compute]

    def nvmlDeviceGetGraphicsRunningProcesses(self, gpu: FakeGpu) -> list[Any]:
        self._check(gpu, "processes")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in gpu.graphics]
