"""The llama-server flags that decide memory, to and from a `RunConfig`.

The flags' spellings come from the llama.cpp table in `reconciler.backends`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, cast

from reconciler.backends import BACKENDS, memory_settings
from reconciler.estimate.memory import RunConfig

__all__ = ["config_from_flags", "llama_server_flags"]

LLAMA = BACKENDS["llama.cpp"]


def llama_server_flags(cfg: RunConfig) -> list[str]:
    """`-c 8192 -np 4 --no-kv-unified -ctk q8_0 ...`: what the server is started with."""
    out = [
        LLAMA.flag_for("ctx"),
        str(cfg.ctx),
        LLAMA.flag_for("parallel"),
        str(cfg.parallel),
        LLAMA.flag_for("kv_unified", cfg.kv_unified),
        LLAMA.flag_for("cache_type_k"),
        cfg.cache_type_k,
        LLAMA.flag_for("cache_type_v"),
        cfg.cache_type_v,
        LLAMA.flag_for("flash_attn"),
        cfg.flash_attn,
        LLAMA.flag_for("ubatch"),
        str(cfg.ubatch),
        LLAMA.flag_for("batch"),
        str(cfg.batch),
        LLAMA.flag_for("gpu_layers"),
        str(cfg.gpu_layers),
    ]
    if cfg.tensor_split:
        shares = ",".join(f"{share:g}" for share in cfg.tensor_split)
        out += [LLAMA.flag_for("tensor_split"), shares]
    return [*out, LLAMA.flag_for("swa_full", True)] if cfg.swa_full else out


def config_from_flags(words: Sequence[str]) -> RunConfig:
    """The reverse of `llama_server_flags` (llama-server's defaults where a flag is absent)."""

    def value(field: str, default: str) -> str:
        for name in LLAMA.names_for(field):
            if name in words:
                return words[list(words).index(name) + 1]
        return default

    layers = value("gpu_layers", "all")
    split = value("tensor_split", "")
    return RunConfig(
        ctx=int(value("ctx", "4096")),
        parallel=int(value("parallel", "1")),
        cache_type_k=value("cache_type_k", "f16"),
        cache_type_v=value("cache_type_v", "f16"),
        flash_attn=cast(Literal["on", "off", "auto"], value("flash_attn", "auto")),
        gpu_layers="all" if layers == "all" else int(layers),
        tensor_split=tuple(float(s) for s in split.split(",")) if split else None,
        **memory_settings(words),  # -ub, -b, --kv-unified, --swa-full
    )
