"""From a chosen option to a resolved `Launch`, and back from a running launch to its size.

`launch_for` is what every start, restart, move and keep carries: the applier renders argv and
environment from it and decides nothing. `as_is_size` sizes an instance as it runs now (from
the journal's estimate, else from its launch), so that it can be charged where it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from reconciler.config.desired import ModelSpec
from reconciler.estimate.facts import ModelFacts
from reconciler.estimate.memory import MIB, RunConfig, estimate
from reconciler.launch import Launch, env_digests, fractions
from reconciler.plan.budget import GpuBudget
from reconciler.plan.options import Option, run_config

__all__ = ["PROGRAMS", "as_is_size", "launch_for", "layers_of"]

PROGRAMS = {"llama.cpp": "llama-server", "vllm": "vllm", "ollama": "ollama"}


def layers_of(o: Option, facts: ModelFacts | None) -> int | None:
    """The layers an option offloads, resolved: `all` is every block and the output head."""
    if facts is None:
        return None
    if not o.gpus:
        return 0
    if o.gpu_layers in ("all", None):
        return facts.n_layer + 1
    return int(o.gpu_layers)


def launch_for(
    principal: ModelSpec,
    spec: ModelSpec,
    o: Option,
    facts: ModelFacts | None,
    budgets: Sequence[GpuBudget],
) -> Launch:
    """The launch of `spec` (the principal or one of its fallbacks) placed as option `o`."""
    gpus = tuple(budgets[g].label for g in o.gpus)
    uuids = tuple(budgets[g].uuid for g in o.gpus)
    program = spec.argv[0] if spec.argv else PROGRAMS.get(spec.backend, spec.backend)
    common = {
        "program": program,
        "model": principal.name,
        "variant": spec.name,
        "backend": spec.backend,
        "host": spec.host,
        "port": spec.port,
        "env": env_digests(spec.env),
        "extra_args": spec.extra_args,
        "gpus": gpus,
        "gpu_uuids": uuids,
    }
    if spec.backend == "llama.cpp":
        cfg = run_config(spec, len(o.gpus))
        return Launch(
            gguf=str(spec.gguf) if spec.gguf is not None else None,
            ctx=cfg.ctx,
            parallel=cfg.parallel,
            cache_type_k=cfg.cache_type_k,
            cache_type_v=cfg.cache_type_v,
            flash_attn=cfg.flash_attn,
            gpu_layers=layers_of(o, facts),
            ubatch=cfg.ubatch,
            batch=cfg.batch,
            kv_unified=cfg.kv_unified,
            swa_full=cfg.swa_full,
            tensor_split=fractions(o.tensor_split) if len(o.gpus) > 1 else None,
            **common,
        )
    if spec.backend == "command":
        return Launch(argv=spec.argv, **common)
    return Launch(
        source=spec.model,
        ctx=spec.ctx,
        tensor_parallel=max(len(o.gpus), 1) if spec.backend == "vllm" else None,
        **common,
    )


def as_is_size(
    launch: Launch, facts: ModelFacts | None, spec: ModelSpec | None
) -> tuple[tuple[int, ...], int] | None:
    """(MiB per GPU of `launch.gpus`, host MiB) of an instance started with `launch`; None
    where nothing says (no facts for a GGUF model, no `vram_mib`)."""
    n = len(launch.gpus)
    if launch.backend == "llama.cpp":
        if facts is None:
            return None
        layers = launch.gpu_layers if launch.gpu_layers is not None else facts.n_layer + 1
        cfg = RunConfig(
            ctx=launch.ctx or 4096,
            parallel=launch.parallel or 1,
            cache_type_k=launch.cache_type_k or "f16",
            cache_type_v=launch.cache_type_v or "f16",
            flash_attn=launch.flash_attn or "auto",
            ubatch=launch.ubatch or 512,
            batch=launch.batch or 2048,
            kv_unified=bool(launch.kv_unified),
            swa_full=bool(launch.swa_full),
            gpu_layers="all" if layers >= facts.n_layer + 1 else layers,
            gpus=n,
            tensor_split=launch.tensor_split,
        )
        result = estimate(facts, cfg)
        per_gpu = tuple(-(-result.device(f"cuda{i}").total // MIB) for i in range(n))
        return per_gpu, -(-result.device("host").total // MIB)
    if spec is None or spec.vram_mib is None or n == 0:
        return None
    return tuple(math.ceil(spec.vram_mib / n) for _ in range(n)), 0
