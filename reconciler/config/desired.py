"""The desired state: which models should run, how, and under what policy.

Frozen pydantic models, unknown keys rejected. These classes check each field on its own;
rules that relate several fields or several models live in `rules.py`, so that one pass over a
file can report every problem, each at its own key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from reconciler.config.limits import MAX_GPUS, MAX_LIST, MAX_MODELS
from reconciler.config.types import (
    CacheType,
    Celsius,
    EnvName,
    Fraction,
    GpuLayers,
    GpuRef,
    Hostname,
    Mebibytes,
    ModelName,
    NonEmptyStr,
    Port,
    PositiveInt,
    format_version,
    invalid,
    one_of,
)
from reconciler.frozen import Frozen

__all__ = [
    "SHARING_PROGRAMS",
    "Desired",
    "Exclusive",
    "Headroom",
    "ModelSpec",
    "Policy",
    "Thermal",
]


BackendName = Literal["llama.cpp", "vllm", "ollama", "command"]
Backend: TypeAlias = Annotated[BackendName, one_of(BackendName)]
PlacementName = Literal["binpack", "spread"]
Placement: TypeAlias = Annotated[PlacementName, one_of(PlacementName)]
ForeignName = Literal["yield", "ignore", "exclusive"]
ForeignPolicy: TypeAlias = Annotated[ForeignName, one_of(ForeignName)]
CacheTypeChoice: TypeAlias = Annotated[CacheType, one_of(CacheType)]
FlashAttnName = Literal["on", "off", "auto"]
FlashAttn: TypeAlias = Annotated[FlashAttnName, one_of(FlashAttnName, booleans=("on", "off"))]
SplitName = Literal["never", "auto"]
SplitMode: TypeAlias = Annotated[SplitName, one_of(SplitName)]
DesiredVersion: TypeAlias = Annotated[Literal[1], format_version(1)]
NAME_MAX = 255  # bytes in one name of a path (Linux, macOS, Windows)
PATH_MAX = 4096  # bytes in a whole path (Linux)


def _path(value: Any, info: ValidationInfo, expected: str) -> Path | None:
    """A path from the file: `~` expanded, relative ones against the file's folder."""
    if value is None:
        return None
    if isinstance(value, Path):  # from Python, not from a file
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise invalid(expected, value)
    if "\0" in value:
        raise invalid(f"{expected}; a path cannot hold a NUL character", value)
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # ~user/ of a user that does not exist, or no home directory
        user = value[1:].split("/", 1)[0]
        who = f"~{user} names no user of this machine" if user else "~ has no home folder here"
        raise invalid(f"{expected}; {who}", value) from None
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
    if longest > NAME_MAX or len(os.fsencode(path)) > PATH_MAX:
        raise invalid(
            f"{expected}; this one is longer than the system allows ({NAME_MAX} bytes a "
            f"name, {PATH_MAX} a path)",
            value,
        )
    return path


class Headroom(Frozen):
    """VRAM never used on each GPU: the larger of the two."""

    reserve_mib: Mebibytes = Field(2048, description="Absolute reserve per GPU, MiB.")
    reserve_fraction: Fraction = Field(0.10, description="Reserve as a fraction of GPU memory.")

    def reserve_for(self, total_mib: int) -> int:
        """MiB to keep free on a GPU of `total_mib`."""
        return max(self.reserve_mib, int(total_mib * self.reserve_fraction + 0.5))


class Thermal(Frozen):
    """Temperature gates: no new starts above `shed_above_c`; evict above `evict_above_c`."""

    shed_above_c: Celsius = 80
    evict_above_c: Celsius = 85


# Programs that share a GPU without needing our models gone (`foreign_processes: exclusive`):
# display servers and compositors, and browsers; matched by process name, any case.
SHARING_PROGRAMS = (
    "Xorg", "Xwayland", "X", "gnome-shell", "kwin_wayland", "kwin_x11", "plasmashell",
    "sway", "Hyprland", "weston", "mutter", "cinnamon", "xfwm4", "picom",
    "firefox", "firefox-bin", "chrome", "chromium", "chromium-browser", "msedge", "brave",
    "opera", "vivaldi-bin",
)  # fmt: skip


class Exclusive(Frozen):
    """What `foreign_processes: exclusive` leaves sharing a GPU with our models."""

    ignore: tuple[NonEmptyStr, ...] = Field(
        SHARING_PROGRAMS,
        description="Process names that do not clear a GPU (compositors, browsers).",
    )
    below_mib: Mebibytes = Field(
        512, description="A program holding less than this does not clear a GPU either."
    )


class Policy(Frozen):
    headroom: Headroom = Headroom()
    placement: Placement = Field(
        "binpack",
        description="binpack fills the fewest GPUs, leaving whole cards free; spread evens out.",
    )
    foreign_processes: ForeignPolicy = Field(
        "yield",
        description="yield: other programs' VRAM is theirs, our models step aside when it no "
        "longer fits; ignore: our running models stay whatever others take; exclusive: any "
        "other program on a GPU (but those of `exclusive.ignore`) makes our models leave it.",
    )
    exclusive: Exclusive = Exclusive()
    thermal: Thermal = Thermal()
    max_models_per_gpu: PositiveInt | None = Field(
        None, description="At most this many models per GPU."
    )


class ModelSpec(Frozen):
    """One model that should be served."""

    name: ModelName = Field(description="Lowercase letters, digits, dashes; part of unit names.")
    backend: Backend = "llama.cpp"
    gguf: Path | None = Field(
        None, description="llama.cpp: the GGUF file (first shard of a split model)."
    )
    model: NonEmptyStr | None = Field(None, description="vllm / ollama: the model id or path.")
    argv: tuple[NonEmptyStr, ...] | None = Field(
        None, max_length=MAX_LIST, description="command: the argv to run."
    )
    priority: int = Field(0, description="Higher wins; ties are broken by order in the file.")
    ctx: PositiveInt = Field(4096, description="Context size in tokens (all slots together).")
    parallel: PositiveInt = Field(1, description="Parallel sequences (server slots).")
    cache_type: CacheTypeChoice = "f16"
    flash_attn: FlashAttn = "auto"
    gpu_layers: GpuLayers = Field(
        "all", description="all, auto (partial offload allowed) or a number of layers."
    )
    split: SplitMode = Field(
        "auto", description="auto may spread the model over several GPUs (--tensor-split)."
    )
    pin: tuple[GpuRef, ...] | None = Field(
        None, min_length=1, max_length=MAX_GPUS, description="Only these GPUs."
    )
    host: Hostname = "127.0.0.1"
    port: Port | None = None
    required: bool = Field(False, description="`reconcile check` fails when it cannot be placed.")
    fallbacks: tuple[ModelName, ...] = Field(
        (),
        max_length=MAX_LIST,
        description="Other entries to run instead, in order, when this one does not fit.",
    )
    env: dict[EnvName, NonEmptyStr] = Field(default_factory=dict, max_length=MAX_LIST)
    extra_args: tuple[NonEmptyStr, ...] = Field((), max_length=MAX_LIST)
    vram_mib: PositiveInt | None = Field(
        None, description="Memory the model needs, where it cannot be estimated from a GGUF."
    )
    health_url: NonEmptyStr | None = Field(
        None,
        description="command: an http(s) URL that answers 200 to GET when the command is ready.",
    )

    @field_validator("gguf", mode="before")
    @classmethod
    def _gguf_path(cls, value: Any, info: ValidationInfo) -> Any:
        return _path(value, info, "must be a path to a .gguf file")

    @property
    def is_gguf(self) -> bool:
        return self.backend == "llama.cpp"


class Desired(Frozen):
    """The whole desired state of one machine."""

    # Top-level `x-` keys hold YAML anchors; the loader drops them before validation.
    model_config = ConfigDict(json_schema_extra={"patternProperties": {"^x-": {}}})

    version: DesiredVersion = Field(description="Format version of this file; 1.")
    policy: Policy = Policy()
    gpus: tuple[GpuRef, ...] | None = Field(
        None,
        min_length=1,
        max_length=MAX_GPUS,
        description="GPU indices or UUIDs we may use; default all.",
    )
    models: tuple[ModelSpec, ...] = Field((), max_length=MAX_MODELS)
    templates: Path | None = Field(
        None,
        description="A folder of Jinja2 templates that override the bundled ones file by file "
        "(backends/<backend>.j2, systemd/reconciler.service.j2); relative to this file's folder. "
        "`--templates DIR` wins over it.",
    )
    llama_server: Path | None = Field(
        None,
        description="llama.cpp: the llama-server program, relative to this file's folder. "
        "Default: $RECONCILER_LLAMA_SERVER, else llama-server on PATH.",
    )

    @field_validator("templates", mode="before")
    @classmethod
    def _templates_path(cls, value: Any, info: ValidationInfo) -> Any:
        return _path(value, info, "must be the path of a folder of templates")

    @field_validator("llama_server", mode="before")
    @classmethod
    def _llama_server_path(cls, value: Any, info: ValidationInfo) -> Any:
        return _path(value, info, "must be the path of the llama-server program")

    def model_named(self, name: str) -> ModelSpec | None:
        return next((m for m in self.models if m.name == name), None)
