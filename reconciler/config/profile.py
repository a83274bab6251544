"""Hardware profiles: named machines to plan against without a GPU (CI, laptops).

A profile lists each GPU as NVML reports it (name, total memory, compute capability) and what
other programs typically hold on it (a desktop compositor, a browser), so that planning against
a profile sees the same budget a real run would.

Every figure is bounded by what a real machine has (`MAX_*` below, shared with snapshots): a
profile or a snapshot beyond them describes no machine, and planning against it would only
cost time and memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

from reconciler.config.limits import MAX_GPUS
from reconciler.config.source import Loc
from reconciler.config.types import NonEmptyStr, format_version, one_of, show
from reconciler.frozen import Frozen

ProcessTypeName = Literal["graphics", "compute"]
ProcessType: TypeAlias = Annotated[ProcessTypeName, one_of(ProcessTypeName)]
ProfileVersion: TypeAlias = Annotated[Literal[1], format_version(1)]

__all__ = [
    "MAX_BASELINE",
    "MAX_CPUS",
    "MAX_GPUS",
    "MAX_GPU_MIB",
    "MAX_HOST_MIB",
    "BaselineProcess",
    "HostProfile",
    "Profile",
    "ProfileGpu",
    "number",
]

#: Memory of one GPU: 1 TiB (the largest cards have 192 GB).
MAX_GPU_MIB = 1 << 20
#: RAM of one host: 64 TiB.
MAX_HOST_MIB = 1 << 26
#: Logical CPUs of one host (Linux's NR_CPUS is at most 8192).
MAX_CPUS = 16384
#: Programs a profile lists on one GPU.
MAX_BASELINE = 64


def number(value: Any) -> str:
    """A number as a message shows it: in full, unless it has more digits than a person
    reads (or than Python converts to text)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        if value.bit_length() > 14_000:  # beyond Python's 4300 digits of int-to-text
            return "a number of over 4000 digits"
        return f"a number of {len(str(abs(value)))} digits"
    return repr(value) if isinstance(value, float) else str(value)


def _between(what: str, low: int, high: int, why: str = "") -> Callable[[Any], int]:
    def check(value: Any) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or not low <= value <= high:
            got = number(value) if ok else _shown(value)
            raise PydanticCustomError(
                "value", "must be {what} from {low} to {high}{why}, got {got}",
                {"what": what, "low": low, "high": high, "why": why, "got": got},
            )  # fmt: skip
        return int(value)

    return check


def _shown(value: Any) -> str:
    return number(value) if isinstance(value, float) else show(value)


def _at_most(count: int, what: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, list | tuple) and len(value) > count:
            raise PydanticCustomError(
                "value",
                "at most {count} {what} (no real machine has more); this profile has {n}",
                {"count": count, "what": what, "n": len(value)},
            )
        return value

    return check


GpuMib: TypeAlias = Annotated[
    int,
    Field(ge=1, le=MAX_GPU_MIB),
    BeforeValidator(_between("a whole number of MiB", 1, MAX_GPU_MIB, " (1 TiB: no GPU has more)")),
]
HeldMib: TypeAlias = Annotated[
    int,
    Field(ge=0, le=MAX_GPU_MIB),
    BeforeValidator(_between("a whole number of MiB", 0, MAX_GPU_MIB)),
]


class BaselineProcess(Frozen):
    """A program that usually holds memory on this GPU (not ours)."""

    name: NonEmptyStr
    used_mib: HeldMib
    type: ProcessType = "graphics"


class ProfileGpu(Frozen):
    name: NonEmptyStr = Field(description="The name NVML reports, e.g. NVIDIA GeForce RTX 4090.")
    memory_mib: GpuMib = Field(description="Total memory as NVML reports it, MiB.")
    compute_capability: NonEmptyStr = Field(description='CUDA compute capability, e.g. "8.9".')
    uuid: NonEmptyStr | None = Field(None, description="Optional GPU UUID to match pins.")
    baseline: Annotated[
        tuple[BaselineProcess, ...],
        Field(max_length=MAX_BASELINE),
        BeforeValidator(_at_most(MAX_BASELINE, "programs per GPU")),
    ] = Field((), description="Programs that usually hold memory on this GPU.")

    @property
    def baseline_mib(self) -> int:
        return sum(p.used_mib for p in self.baseline)


class HostProfile(Frozen):
    ram_mib: Annotated[
        int,
        Field(ge=1, le=MAX_HOST_MIB),
        BeforeValidator(_between("a whole number of MiB", 1, MAX_HOST_MIB, " (64 TiB)")),
    ] = Field(description="Total system RAM, MiB.")
    cpus: Annotated[
        int,
        Field(ge=1, le=MAX_CPUS),
        BeforeValidator(_between("a number of logical CPUs", 1, MAX_CPUS)),
    ] = Field(description="Logical CPUs.")


class Profile(Frozen):
    """A named machine."""

    version: ProfileVersion
    description: NonEmptyStr
    host: HostProfile
    gpus: Annotated[
        tuple[ProfileGpu, ...],
        Field(max_length=MAX_GPUS),
        BeforeValidator(_at_most(MAX_GPUS, "GPUs")),
    ] = Field((), description="Empty for a machine without NVIDIA GPUs.")

    def problems(self) -> list[tuple[Loc, str]]:
        """What no machine can be, each at its key: a GPU whose programs hold more than it
        has, two GPUs with one UUID."""
        out: list[tuple[Loc, str]] = []
        seen: dict[str, int] = {}
        for index, gpu in enumerate(self.gpus):
            if gpu.baseline_mib > gpu.memory_mib:
                out.append(
                    (
                        ("gpus", index, "baseline"),
                        f"these programs hold {gpu.baseline_mib} MiB, more than the GPU's "
                        f"{gpu.memory_mib} MiB (memory_mib)",
                    )
                )
            if gpu.uuid is None:
                continue
            if gpu.uuid in seen:
                message = f"GPU {seen[gpu.uuid]} has this UUID too; each GPU has its own"
                out.append((("gpus", index, "uuid"), message))
            seen.setdefault(gpu.uuid, index)
        return out
