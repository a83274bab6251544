"""Which command-line flags of each backend the reconciler manages: one table per backend.

Validation (`config/rules.py`), the estimator (`estimate/flags.py`, `plan/options.py`) and the
rendering of launch commands read this table, so a flag is described once. A flag in a model's
`extra_args` is one of:

- managed: the reconciler sets it from a desired-file key; refused in `extra_args`, with a
  pointer to the key;
- modelled: it changes memory and the estimator models it (llama.cpp's `-ub`, `-b`,
  `--kv-unified`, `--swa-full`); accepted, and its value reaches the `RunConfig`;
- refused: it changes memory in a way the estimator does not model (a draft model, a
  multimodal projector, tensors moved between devices); refused, with what to do instead;
- anything else: passed through untouched.

Both spellings of a value are read: `[-ub, 1024]` (two items) and `[--ubatch-size=1024]`.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = [
    "BACKENDS",
    "Backend",
    "FlagUse",
    "Managed",
    "Modelled",
    "Refused",
    "flag_uses",
    "memory_settings",
    "positive_int",
]


@dataclass(frozen=True)
class Managed:
    """A flag the reconciler sets itself from `key` ("" when the planner decides it alone)."""

    names: tuple[str, ...]  # every spelling; the first is the one the reconciler writes
    key: str
    field: str = ""  # the RunConfig field it carries (llama.cpp), "" when none


@dataclass(frozen=True)
class Modelled:
    """A flag that changes memory and that the estimator models through `RunConfig.field`."""

    names: tuple[str, ...]
    field: str
    switch: bool | None = None  # a switch sets the field to this; None: takes a positive integer


@dataclass(frozen=True)
class Refused:
    """A flag that changes memory in a way the estimator does not model: `adds` says how."""

    names: tuple[str, ...]
    adds: str


Entry = Managed | Modelled | Refused


@dataclass(frozen=True)
class Backend:
    name: str
    managed: tuple[Managed, ...] = ()
    modelled: tuple[Modelled, ...] = ()
    refused: tuple[Refused, ...] = ()

    @property
    def entries(self) -> tuple[Entry, ...]:
        return (*self.managed, *self.modelled, *self.refused)

    def entry(self, flag: str) -> Entry | None:
        """What the table says about `flag` (one spelling, without `=value`)."""
        return next((e for e in self.entries if flag in e.names), None)

    def names_for(self, field: str, switch: bool | None = None) -> tuple[str, ...]:
        """Every spelling of the flag that sets RunConfig `field` (to `switch`, for switches)."""
        for entry in self.entries:
            if isinstance(entry, Refused) or entry.field != field:
                continue
            if not isinstance(entry, Modelled) or entry.switch is switch:
                return entry.names
        raise KeyError(f"no {self.name} flag sets {field}")

    def flag_for(self, field: str, switch: bool | None = None) -> str:
        """The spelling the reconciler writes for RunConfig `field`."""
        return self.names_for(field, switch)[0]


LLAMA_CPP = Backend(
    "llama.cpp",
    managed=(
        Managed(("-m", "--model"), "gguf"),
        Managed(("-c", "--ctx-size"), "ctx", "ctx"),
        Managed(("-np", "--parallel"), "parallel", "parallel"),
        Managed(("-ngl", "--gpu-layers", "--n-gpu-layers"), "gpu_layers", "gpu_layers"),
        Managed(("-ctk", "--cache-type-k"), "cache_type", "cache_type_k"),
        Managed(("-ctv", "--cache-type-v"), "cache_type", "cache_type_v"),
        Managed(("-fa", "--flash-attn"), "flash_attn", "flash_attn"),
        Managed(("--host",), "host"),
        Managed(("--port",), "port"),
        Managed(("-ts", "--tensor-split"), "split", "tensor_split"),
        Managed(("-sm", "--split-mode"), "split"),
        Managed(("-dev", "--device"), "pin"),
        Managed(("-mg", "--main-gpu"), "pin"),
        Managed(("--fit", "-fit"), ""),
    ),
    modelled=(
        Modelled(("-ub", "--ubatch-size"), "ubatch"),
        Modelled(("-b", "--batch-size"), "batch"),
        Modelled(("--kv-unified", "-kvu"), "kv_unified", switch=True),
        Modelled(("--no-kv-unified", "-no-kvu"), "kv_unified", switch=False),
        Modelled(("--swa-full",), "swa_full", switch=True),
    ),
    refused=(
        Refused(("-md", "--model-draft"), "a draft model's weights and KV cache"),
        Refused(("-mm", "--mmproj", "-mmu", "--mmproj-url"), "a multimodal projector's weights"),
        Refused(("-ot", "--override-tensor"), "it moves tensors between devices"),
        Refused(("-cmoe", "--cpu-moe"), "experts kept on the CPU"),
        Refused(("-ncmoe", "--n-cpu-moe"), "experts kept on the CPU"),
    ),
)

VLLM = Backend(
    "vllm",
    managed=(
        Managed(("--model",), "model"),
        Managed(("--host",), "host"),
        Managed(("--port",), "port"),
        Managed(("--max-model-len",), "ctx"),
        Managed(("--tensor-parallel-size", "-tp"), "split"),
        Managed(("--gpu-memory-utilization",), "vram_mib"),
        Managed(("--kv-cache-memory-bytes",), "vram_mib"),
    ),
)

# Ollama is configured through its environment, and a `command` model's argv is its own.
BACKENDS = {b.name: b for b in (LLAMA_CPP, VLLM, Backend("ollama"), Backend("command"))}


@dataclass(frozen=True)
class FlagUse:
    """One flag of the table found in an argument list."""

    index: int  # where the flag is
    flag: str  # as written, without `=value`
    entry: Entry
    value: str | None = None  # a modelled flag's value (after `=`, or the next item)
    value_index: int = -1  # where that value is; -1 when it is missing
    inline: bool = False  # written as `--flag=value`


def flag_uses(backend: str, args: Sequence[str]) -> Iterator[FlagUse]:
    """The flags of `backend`'s table in `args`, in order; a modelled flag's value is read
    (and skipped), every other item is looked at as a flag."""
    table = BACKENDS[backend]
    j = 0
    while j < len(args):
        flag, eq, inline = args[j].partition("=")
        entry = table.entry(flag)
        if entry is None:
            j += 1
            continue
        if eq:
            yield FlagUse(j, flag, entry, inline, j, inline=True)
        elif isinstance(entry, Modelled) and entry.switch is None:
            there = j + 1 < len(args)
            yield FlagUse(j, flag, entry, args[j + 1] if there else None, j + 1 if there else -1)
            j += 1
        else:
            yield FlagUse(j, flag, entry)
        j += 1


def positive_int(text: str) -> int | None:
    """`text` as a positive integer, or None."""
    return int(text) if text.isascii() and text.isdigit() and int(text) > 0 else None


def memory_settings(extra_args: Sequence[str]) -> dict[str, object]:
    """The RunConfig fields that llama.cpp `extra_args` set (the last flag wins, as in
    llama-server); values that validation refuses are left out."""
    settings: dict[str, object] = {}
    for use in flag_uses("llama.cpp", extra_args):
        entry = use.entry
        if not isinstance(entry, Modelled):
            continue
        if entry.switch is not None:
            if not use.inline:
                settings[entry.field] = entry.switch
            continue
        number = positive_int(use.value or "")
        if number is not None:
            settings[entry.field] = number
    return settings
