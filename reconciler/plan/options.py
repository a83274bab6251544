"""Where a desired model could run: every placement option, sized by the estimator.

An option is a variant (the model or one of its fallbacks), a set of GPUs with the memory it
takes on each (each device pays its own CUDA overhead), a tensor split and the layers
offloaded. Options come in preference order: the model before its fallbacks, one GPU before a
split, all layers before partial offload.

A GGUF model with `split: auto` may spread over 2 to `MAX_SPLIT_GPUS` of its GPUs, with
`--tensor-split` proportional to their budgets. Per size, the `MAX_SPLIT_SETS` sets with the
largest budget sums are offered; `best_sets` finds them best-first without listing every
combination (there are 2^n), and spreads sets of equal sums over interchangeable GPUs. The
estimator runs once per distinct configuration: a one-GPU option is the same on every GPU, and
a split's memory depends only on its size and its normalised shares.

Models sized by `vram_mib` cannot be split by layers: vLLM (`split: auto`) splits evenly with
tensor parallelism over `TP_SIZES` GPUs, each holding ceil(vram_mib / tp); Ollama and `command`
run on one GPU. `most_mib` is the most memory any placement of a model can have.
"""

from __future__ import annotations

import heapq
import itertools
import math
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
    "MAX_SPLIT_GPUS",
    "MAX_SPLIT_SETS",
    "ONE_GPU_BACKENDS",
    "PARTIAL_RANK",
    "TP_SIZES",
    "VARIANT_RANK",
    "Option",
    "best_sets",
    "layer_rank",
    "most_mib",
    "options_for",
    "run_config",
]

MAX_SPLIT_SETS = 32  # GPU sets tried per split size: the largest by budget first
# llama.cpp drives at most 16 devices (llama_max_devices()), and its argument parser refuses a
# --tensor-split of as many values (common/arg.cpp: size >= llama_max_devices()): 15 GPUs
MAX_SPLIT_GPUS = 15
TP_SIZES = (2, 4, 8)  # vLLM tensor parallelism beyond one GPU: powers of two
ONE_GPU_BACKENDS = ("command", "ollama")  # no split of any kind
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
    tensor_parallel: int | None = None  # vLLM's tensor-parallel size (1: one GPU); else None
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


def best_sets(
    gpus: Sequence[int], budget: Sequence[int], size: int, limit: int
) -> list[tuple[int, ...]]:
    """Up to `limit` sets of `size` GPUs out of `gpus`, each in index order, the largest budget
    sum first, without listing every combination.

    GPUs of equal budget are interchangeable, so sums are those of multisets of budgets: these
    come best-first from a heap (a multiset's successors move one GPU to the next lower budget;
    each is reached from the one that takes the largest budgets). A multiset's sets all come,
    in index order, when they fit in what is left of `limit` (on small machines: every
    combination, as sorting them all would give); otherwise sets that overlap as little as
    possible (disjoint runs of each budget's GPUs first), so that several models can each find
    one rather than all of them sharing the first GPUs.
    """
    classes: dict[int, list[int]] = {}
    for g in sorted(gpus):
        classes.setdefault(budget[g], []).append(g)
    values = sorted(classes, reverse=True)
    members = [classes[v] for v in values]
    room = [len(m) for m in members]
    if not 0 < size <= len(gpus) or limit <= 0:
        return []
    first, left = [], size
    for n in room:
        first.append(min(n, left))
        left -= first[-1]

    def entry(counts: tuple[int, ...]) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        return (
            -sum(k * v for k, v in zip(counts, values, strict=True)),
            tuple(-k for k in counts),
            counts,
        )

    heap = [entry(tuple(first))]
    seen = {heap[0][2]}
    out: list[tuple[int, ...]] = []
    while heap and len(out) < limit:
        counts = heapq.heappop(heap)[2]
        out += _sets_of(members, counts, limit - len(out))
        for i in range(len(counts) - 1):
            if counts[i] and counts[i + 1] < room[i + 1]:
                nxt = (*counts[:i], counts[i] - 1, counts[i + 1] + 1, *counts[i + 2 :])
                if nxt not in seen:
                    seen.add(nxt)
                    heapq.heappush(heap, entry(nxt))
    return out


def _sets_of(
    members: Sequence[list[int]], counts: Sequence[int], limit: int
) -> list[tuple[int, ...]]:
    """Sets taking counts[c] GPUs of members[c]: all of them when they are at most `limit`,
    else up to `limit` that overlap little (the b-th set takes the b-th run of each class)."""
    parts = [(m, k) for m, k in zip(members, counts, strict=True) if k]
    if math.prod(math.comb(len(m), k) for m, k in parts) <= limit:
        picks = itertools.product(*(itertools.combinations(m, k) for m, k in parts))
        return sorted(tuple(sorted(itertools.chain(*pick))) for pick in picks)
    runs = [_runs(m, k) for m, k in parts]
    out: list[tuple[int, ...]] = []
    for b in range(max(len(r) for r in runs)):
        gpu_set = tuple(sorted(g for r in runs for g in r[b % len(r)]))
        if gpu_set not in out:
            out.append(gpu_set)
        if len(out) == limit:
            break
    return out


def _runs(members: list[int], k: int) -> list[list[int]]:
    """Runs of k consecutive members: the disjoint ones first (starts 0, k, 2k ...), then
    those shifted by one, by two ..."""
    starts = sorted(range(len(members) - k + 1), key=lambda s: (s % k, s))
    return [members[s : s + k] for s in starts]


class _Sizer:
    """The estimator for one variant, run once per distinct configuration."""

    def __init__(self, model: ModelSpec, facts: ModelFacts) -> None:
        self.model, self.facts = model, facts
        self._memo: dict[tuple[object, ...], tuple[tuple[int, ...], int]] = {}

    def option(self, gpus: tuple[int, ...], cfg: RunConfig, rank: int) -> Option:
        shares = cfg.tensor_split
        # the estimator reads the split only as share / sum: equal fractions, equal memory
        fractions = None if shares is None else tuple(s / sum(shares) for s in shares)
        key = (cfg.gpus, cfg.gpu_layers, fractions)
        if key not in self._memo:
            result = estimate(self.facts, cfg)
            devices = [result.device(f"cuda{i}").total for i in range(cfg.gpus)]
            host = result.device("host").total
            self._memo[key] = (tuple(-(-d // MIB) for d in devices), -(-host // MIB))
        mib, host_mib = self._memo[key]
        return Option(
            variant=self.model.name,
            gpus=gpus,
            mib=mib,
            host_mib=host_mib,
            tensor_split=shares,
            gpu_layers=cfg.gpu_layers,
            rank=rank,
        )


def _gpu_sets(model: ModelSpec, budgets: Sequence[GpuBudget]) -> list[int]:
    return [i for i, b in enumerate(budgets) if b.usable and b.named_in(model.pin)]


def _variant_options(
    model: ModelSpec, facts: ModelFacts | None, budgets: Sequence[GpuBudget], rank: int
) -> list[Option]:
    gpus = _gpu_sets(model, budgets)
    if facts is None:
        return _even_options(model, gpus, budgets, rank)
    sizer = _Sizer(model, facts)
    one = run_config(model, 1)
    out = [sizer.option((g,), one, rank) for g in gpus]
    if model.split == "auto" and len(gpus) > 1:
        budget = [b.budget_mib for b in budgets]
        for size in range(2, min(len(gpus), MAX_SPLIT_GPUS) + 1):
            for gpu_set in best_sets(gpus, budget, size, MAX_SPLIT_SETS):
                shares = tuple(float(max(budget[g], 1)) for g in gpu_set)
                cfg = run_config(model, size, tensor_split=shares)
                out.append(sizer.option(gpu_set, cfg, rank + 1))
    if model.gpu_layers == "auto":
        n = facts.n_layer + 1
        for step in PARTIAL_STEPS:
            layers = max(int(n * step), 1)
            partial = one.model_copy(update={"gpu_layers": layers})
            out += [sizer.option((g,), partial, rank + layer_rank(n, layers)) for g in gpus]
        cpu = sizer.option((), run_config(model, 0), rank + layer_rank(n, 0))
        out.append(
            Option(cpu.variant, (), (), cpu.host_mib, gpu_layers=0, rank=rank + layer_rank(n, 0))
        )
    return out


def _even_options(
    model: ModelSpec, gpus: list[int], budgets: Sequence[GpuBudget], rank: int
) -> list[Option]:
    """Sized by `vram_mib`: all of it on one GPU, or for vLLM an even share on each of 2, 4 or
    8 GPUs (tensor parallelism), the sets with the largest budgets first."""
    need = model.vram_mib or 0
    tp = 1 if model.backend == "vllm" else None
    out = [Option(model.name, (g,), (need,), 0, rank=rank, tensor_parallel=tp) for g in gpus]
    if tp is None or model.split != "auto":
        return out
    budget = [b.budget_mib for b in budgets]
    for size in (s for s in TP_SIZES if s <= len(gpus)):
        each = -(-need // size)
        out += [
            Option(model.name, gpu_set, (each,) * size, 0, rank=rank + 1, tensor_parallel=size)
            for gpu_set in best_sets(gpus, budget, size, MAX_SPLIT_SETS)
        ]
    return out


def most_mib(model: ModelSpec, budgets: Sequence[int]) -> int:
    """The most memory one placement of `model` can have on GPUs of these budgets: one GPU's
    for Ollama, `command` and `split: never`; for vLLM the best even split over 1, 2, 4 or 8
    GPUs; for llama.cpp the sum of the largest `MAX_SPLIT_GPUS`."""
    room = sorted(budgets, reverse=True)
    if not room:
        return 0
    if model.split != "auto" or model.backend in ONE_GPU_BACKENDS:
        return room[0]
    if model.backend == "vllm":
        return max(tp * room[tp - 1] for tp in (1, *TP_SIZES) if tp <= len(room))
    return sum(room[:MAX_SPLIT_GPUS])


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
