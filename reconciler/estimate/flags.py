"""The llama-server flags that decide memory, to and from a `RunConfig`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, cast

from reconciler.estimate.memory import RunConfig

__all__ = ["config_from_flags", "llama_server_flags"]


def llama_server_flags(cfg: RunConfig) -> list[str]:
    """`-c 8192 -np 4 --no-kv-unified -ctk q8_0 ...`: what the server is started with."""
    out = [
        "-c",
        str(cfg.ctx),
        "-np",
        str(cfg.parallel),
        "--kv-unified" if cfg.kv_unified else "--no-kv-unified",
        "-ctk",
        cfg.cache_type_k,
        "-ctv",
        cfg.cache_type_v,
        "-fa",
        cfg.flash_attn,
        "-ub",
        str(cfg.ubatch),
        "-b",
        str(cfg.batch),
        "-ngl",
        str(cfg.gpu_layers),
    ]
    if cfg.tensor_split:
        out += ["-ts", ",".join(f"{share:g}" for share in cfg.tensor_split)]
    return [*out, "--swa-full"] if cfg.swa_full else out


def config_from_flags(words: Sequence[str]) -> RunConfig:
    """The reverse of `llama_server_flags` (llama-server's defaults where a flag is absent)."""

    def value(*names: str, default: str) -> str:
        for name in names:
            if name in words:
                return words[list(words).index(name) + 1]
        return default

    layers = value("-ngl", "--gpu-layers", default="all")
    split = value("-ts", "--tensor-split", default="")
    return RunConfig(
        ctx=int(value("-c", "--ctx-size", default="4096")),
        parallel=int(value("-np", "--parallel", default="1")),
        kv_unified="--kv-unified" in words or "-kvu" in words,
        cache_type_k=value("-ctk", "--cache-type-k", default="f16"),
        cache_type_v=value("-ctv", "--cache-type-v", default="f16"),
        flash_attn=cast(Literal["on", "off", "auto"], value("-fa", "--flash-attn", default="auto")),
        ubatch=int(value("-ub", "--ubatch-size", default="512")),
        batch=int(value("-b", "--batch-size", default="2048")),
        gpu_layers="all" if layers == "all" else int(layers),
        tensor_split=tuple(float(s) for s in split.split(",")) if split else None,
        swa_full="--swa-full" in words,
    )
