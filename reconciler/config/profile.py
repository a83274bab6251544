"""Hardware profiles: named machines to plan against without a GPU (CI, laptops).

A profile lists each GPU as NVML reports it (name, total memory, compute capability) and what
other programs typically hold on it (a desktop compositor, a browser), so that planning against
a profile sees the same budget a real run would.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeAlias

from pydantic import Field

from reconciler.config.types import Mebibytes, NonEmptyStr, PositiveInt, format_version, one_of
from reconciler.frozen import Frozen

ProcessTypeName = Literal["graphics", "compute"]
ProcessType: TypeAlias = Annotated[ProcessTypeName, one_of(ProcessTypeName)]
ProfileVersion: TypeAlias = Annotated[Literal[1], format_version(1)]

__all__ = [
    "BaselineProcess",
    "HostProfile",
    "Profile",
    "ProfileGpu",
]


class BaselineProcess(Frozen):
    """A program that usually holds memory on this GPU (not ours)."""

    name: NonEmptyStr
    used_mib: Mebibytes
    type: ProcessType = "graphics"


class ProfileGpu(Frozen):
    name: NonEmptyStr = Field(description="The name NVML reports, e.g. NVIDIA GeForce RTX 4090.")
    memory_mib: PositiveInt = Field(description="Total memory as NVML reports it, MiB.")
    compute_capability: NonEmptyStr = Field(description='CUDA compute capability, e.g. "8.9".')
    uuid: NonEmptyStr | None = Field(None, description="Optional GPU UUID to match pins.")
    baseline: tuple[BaselineProcess, ...] = Field(
        (), description="Programs that usually hold memory on this GPU."
    )

    @property
    def baseline_mib(self) -> int:
        return sum(p.used_mib for p in self.baseline)


class HostProfile(Frozen):
    ram_mib: PositiveInt = Field(description="Total system RAM, MiB.")
    cpus: PositiveInt = Field(description="Logical CPUs.")


class Profile(Frozen):
    """A named machine."""

    version: ProfileVersion
    description: NonEmptyStr
    host: HostProfile
    gpus: tuple[ProfileGpu, ...] = Field((), description="Empty for a machine without NVIDIA GPUs.")
