"""What a running instance is charged: the larger of its estimate and what NVML measures.

The estimate is the journal's (what the plan that started it said), else computed from the
launch it was started with, else from the desired entry; a model sized by `vram_mib` that
has changed since it started is charged what it holds. Where the driver does not report the
instance's memory (WDDM, WSL), it is charged its estimate, and the GPUs where that happens
are named, so that the budget counts it as ours rather than as another program's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.config.desired import Desired, ModelSpec
from reconciler.estimate.facts import ModelFacts
from reconciler.estimate.memory import MIB, estimate
from reconciler.plan.options import run_config
from reconciler.plan.resolve import as_is_size
from reconciler.state import Instance

__all__ = ["Charge", "charge_of"]


@dataclass(frozen=True)
class Charge:
    """What one running instance holds: MiB per GPU (in the order of its `gpus`), host MiB,
    and the GPUs where the driver does not report its memory."""

    gpus: tuple[str, ...]
    mib: tuple[int, ...]
    host_mib: int
    unreported: tuple[str, ...] = ()


def _size_from_spec(
    spec: ModelSpec | None, facts: ModelFacts | None, n: int
) -> tuple[tuple[int, ...], int] | None:
    if spec is None:
        return None
    if facts is not None and spec.backend == "llama.cpp":
        result = estimate(facts, run_config(spec, n))
        per_gpu = tuple(-(-result.device(f"cuda{i}").total // MIB) for i in range(n))
        return per_gpu, -(-result.device("host").total // MIB)
    if spec.vram_mib is not None and n:
        return tuple(-(-spec.vram_mib // n) for _ in range(n)), 0
    return None


def charge_of(inst: Instance, desired: Desired, facts: Mapping[str, ModelFacts]) -> Charge:
    """What a running instance is charged: max(estimate, measured) on each of its GPUs."""
    spec = desired.model_named(inst.model)
    gpus = inst.launch.gpus if inst.launch is not None and inst.launch.gpus else inst.gpus
    gpus = tuple(gpus) or inst.gpus
    size: tuple[tuple[int, ...], int] | None = None
    gguf = spec is not None and spec.backend == "llama.cpp"
    if inst.estimate_mib is not None:  # what the plan that started it said: the journal's
        size = tuple(inst.estimate_mib.get(g, 0) for g in gpus), inst.estimate_mib.get("host", 0)
    elif inst.launch is not None and gguf:
        size = as_is_size(inst.launch, facts.get(inst.model), spec)
    elif not gguf and all(g in inst.used_by_gpu for g in gpus):
        # a declared size may have changed since it started: what it holds is what counts
        size = tuple(inst.used_by_gpu[g] for g in gpus), 0
    if size is None:
        size = _size_from_spec(spec, facts.get(inst.model), len(gpus))
    est, host = size if size is not None else (tuple(0 for _ in gpus), 0)
    mib = tuple(max(e, inst.used_by_gpu.get(g, 0)) for g, e in zip(gpus, est, strict=True))
    unreported = tuple(g for g in gpus if g not in inst.used_by_gpu)
    return Charge(gpus, mib, host, unreported)
