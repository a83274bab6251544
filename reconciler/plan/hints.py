"""What would make a model fit: changes to its entry in the desired file, each checked with the
planner's own options (sized by the estimator) against the room it is given.

A hint is never one the file or the model would refuse: no ctx above the model's trained
context (`n_ctx_train`, from the GGUF or the lock file), a quantized cache type only with flash
attention, `gpu_layers: auto` only where a partial offload (at least one layer on a GPU) fits
both the GPU and the host, and said with the layers it would put on the GPU. The check runs
on the `HINT_GPUS` GPUs with the most room (a split over more is not looked for), so that a
plan of many blocked models on a large machine stays cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

from reconciler.config.desired import ModelSpec
from reconciler.estimate.facts import ModelFacts
from reconciler.plan.budget import GpuBudget
from reconciler.plan.options import Option, options_for

__all__ = ["CTX_FLOOR", "HINT_GPUS", "hints"]

CTX_FLOOR = 1024  # no smaller ctx is suggested
HINT_GPUS = 2  # the GPUs with the most room that hints are checked on
# bits per KV cache element: a cache type is suggested only where it is smaller
CACHE_BITS = {
    "f32": 32.0,
    "f16": 16.0,
    "bf16": 16.0,
    "q8_0": 8.5,
    "q5_1": 6.0,
    "q5_0": 5.5,
    "q4_1": 5.0,
    "iq4_nl": 4.5,
    "q4_0": 4.5,
}
SMALLER_CACHES = ("q8_0", "q4_0")

_Fits = Callable[..., Option | None]  # a change to the entry -> the option that fits, or None


def hints(
    m: ModelSpec,
    facts: ModelFacts | None,
    budgets: Sequence[GpuBudget],
    room: Mapping[int, int],
    host_mib: int,
) -> list[str]:
    """Changes that would let `m` fit in `room` (MiB per GPU position) and `host_mib` of host
    memory, each as it would be written in the desired file; none when nothing is known."""
    if facts is None or not m.is_gguf or not room:
        return []
    top = sorted(room, key=lambda g: (-room[g], g))[:HINT_GPUS]
    near = {g: room[g] for g in top}

    def fits(**change: object) -> Option | None:
        spec = m.model_copy(update=change)
        return _first_fit(spec, facts, budgets, near, host_mib)

    out = []
    bits = CACHE_BITS.get(m.cache_type, 16.0)
    for cache in (c for c in SMALLER_CACHES if CACHE_BITS[c] < bits):
        flash = {"flash_attn": "on"} if m.flash_attn == "off" else {}
        if fits(cache_type=cache, **flash) is not None:
            out.append(f"cache_type: {cache}" + (" with flash_attn: on" if flash else ""))
            break
    out += _ctx_hint(m, facts, fits)
    if m.gpu_layers != "auto":
        partial = fits(gpu_layers="auto")
        if partial is not None and partial.gpus and partial.gpu_layers != "all":
            where = " + ".join(f"GPU {budgets[g].label}" for g in partial.gpus)
            out.append(
                f"gpu_layers: auto ({partial.gpu_layers} of {facts.n_layer + 1} layers on "
                f"{where}, {partial.host_mib} MiB on the host)"
            )
    return out


def _ctx_hint(m: ModelSpec, facts: ModelFacts, fits: _Fits) -> list[str]:
    """The largest ctx that fits: the trained context where the file asks for more, else
    halvings of the file's ctx, down to `CTX_FLOOR`."""
    trained = facts.n_ctx_train
    ctx = m.ctx // 2
    if 0 < trained < m.ctx:
        ctx = trained
    while ctx >= CTX_FLOOR:
        if fits(ctx=ctx) is not None:
            note = " (the model's trained context)" if ctx == trained else ""
            return [f"ctx: {ctx}{note}"]
        ctx //= 2
    return []


def _first_fit(
    spec: ModelSpec,
    facts: ModelFacts,
    budgets: Sequence[GpuBudget],
    room: Mapping[int, int],
    host_mib: int,
) -> Option | None:
    """The most preferred option of `spec` on the GPUs of `room` that fits there."""
    only = [b if g in room else _unusable(b) for g, b in enumerate(budgets)]
    for o in options_for(spec, [], {spec.name: facts}, only):
        pieces = zip(o.gpus, o.mib, strict=True)
        if o.gpus and o.host_mib <= host_mib and all(n <= room[g] for g, n in pieces):
            return o
    return None


def _unusable(b: GpuBudget) -> GpuBudget:
    return dataclasses.replace(b, usable=False)
