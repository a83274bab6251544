"""Where a desired model could run: every placement option, sized by the estimator.

An option is a variant (the model or one of its fallbacks), a set of GPUs with the memory it
takes on each (each device pays its own CUDA overhead), a tensor split and the layers
offloaded. Options come in preference order: the model before its fallbacks, one GPU before a
split, all layers before partial offload.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.backends import memory_settings
from reconciler.config.desired import ModelSpec
from reconciler.estimate.facts import ModelFacts
from reconciler.estimate.memory import MIB, RunConfig, estimate
from reconciler.launch import Launch
from reconciler.plan.budget import GpuBudget

__all__ = [
    "AS_IS_RANK",
    "MAX_SPLIT_SETS",
    "PARTIAL_RANK",
    "VARIANT_RANK",
    "Option",
    "layer_rank",
    "options_for",
    "run_config",
]

MAX_SPLIT_SETS = 32  # GPU sets tried per split size: the largest by budget first
PARTIAL_STEPS = (0.75, 0.5, 0.25)
# Ranks (lower is preferred): VARIANT_RANK per fallback step; inside a variant one GPU (+0),
# a split (+1), partial offload by the layers it leaves on the host (+PARTIAL_RANK + left;
# the CPU alone leaves them all), and last an instance kept running as it was started
# although the desired file now says otherwise (+AS_IS_RANK).
VARIANT_RANK = 1000
PARTIAL_RANK = 10
AS_IS_RANK = 999


def layer_rank(n_layers: int, offloaded: int) -> int:
    """The rank, inside a variant, of a partial offload of `offloaded` of `n_layers`."""
    return PARTIAL_RANK + max(n_layers - offloaded, 0)


@dataclass(frozen=True)
class Option:
    variant: str
    gpus: tuple[int, ...]  # positions in the budget list
    mib: tuple[int, ...]  # memory on each of those GPUs
    host_mib: int
    tensor_split: tuple[float, ...] | None = None
    gpu_layers: int | str = "all"
    rank: int = 0  # preference class: lower is better
    tensor_parallel: int | None = None  # vLLM: GPUs in tensor parallelism
    margin_mib: int = 0  # added to each piece of an upgrade, so that it does not flap
    here: bool = False  # the instance as it runs now, charged what it holds
    launch: Launch | None = None  # for an instance kept as started: its launch

    @property
    def total_mib(self) -> int:
        return sum(self.mib)


def run_config(model: ModelSpec, gpus: int, **extra: object) -> RunConfig:
    layers = model.gpu_layers if isinstance(model.gpu_layers, int) else "all"
    # Flags in extra_args that the estimator models (-ub, -b, --kv-unified, --swa-full).
    flags = memory_settings(model.extra_args) if model.is_gguf else {}
    return RunConfig(
        ctx=model.ctx,
        parallel=model.parallel,
        cache_type_k=model.cache_type,
        cache_type_v=model.cache_type,
        flash_attn=model.flash_attn,
        gpu_layers=layers,
        gpus=gpus,
        **{**flags, **extra},
    )


def _sized(model: ModelSpec, facts: ModelFacts, gpus: Sequence[int], cfg: RunConfig) -> Option:
    result = estimate(facts, cfg)
    devices = [result.device(f"cuda{i}").total for i in range(len(gpus))]
    return Option(
        variant=model.name,
        gpus=tuple(gpus),
        mib=tuple(-(-d // MIB) for d in devices),
        host_mib=-(-result.device("host").total // MIB),
        tensor_split=cfg.tensor_split,
        gpu_layers=cfg.gpu_layers,
    )


def _gpu_sets(model: ModelSpec, budgets: Sequence[GpuBudget]) -> list[int]:
    return [i for i, b in enumerate(budgets) if b.usable and b.named_in(model.pin)]


def _variant_options(
    model: ModelSpec, facts: ModelFacts | None, budgets: Sequence[GpuBudget], rank: int
) -> list[Option]:
    gpus = _gpu_sets(model, budgets)
    if facts is None:  # sized by vram_mib: one GPU, all of it there
        need = model.vram_mib or 0
        return [Option(model.name, (g,), (need,), 0, rank=rank) for g in gpus]
    out = [
        dataclasses.replace(_sized(model, facts, [g], run_config(model, 1)), rank=rank)
        for g in gpus
    ]
    if model.split == "auto" and len(gpus) > 1:
        for size in range(2, len(gpus) + 1):
            sets = sorted(
                itertools.combinations(gpus, size),
                key=lambda s: -sum(budgets[g].budget_mib for g in s),
            )[:MAX_SPLIT_SETS]
            for gpu_set in sets:
                shares = tuple(float(max(budgets[g].budget_mib, 1)) for g in gpu_set)
                cfg = run_config(model, size, tensor_split=shares)
                out.append(dataclasses.replace(_sized(model, facts, gpu_set, cfg), rank=rank + 1))
    if model.gpu_layers == "auto":
        n = facts.n_layer + 1
        for step in PARTIAL_STEPS:
            layers = max(int(n * step), 1)
            for g in gpus:
                cfg = run_config(model, 1).model_copy(update={"gpu_layers": layers})
                sized = _sized(model, facts, [g], cfg)
                out.append(dataclasses.replace(sized, rank=rank + layer_rank(n, layers)))
        cpu = _sized(model, facts, [], run_config(model, 0))
        out.append(dataclasses.replace(cpu, rank=rank + layer_rank(n, 0), gpu_layers=0))
    return out


def options_for(
    model: ModelSpec,
    variants: Sequence[ModelSpec],
    facts: Mapping[str, ModelFacts],
    budgets: Sequence[GpuBudget],
) -> list[Option]:
    """Every option for `model`, its fallbacks after it, in preference order."""
    out: list[Option] = []
    for k, variant in enumerate([model, *variants]):
        out += _variant_options(variant, facts.get(variant.name), budgets, rank=VARIANT_RANK * k)
    return out
