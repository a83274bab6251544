"""Why: the words of a plan's reasons for what cannot run, what must step aside, what changed.

Every reason is computed from the same data the solver saw (budgets, options, the chosen
assignment); the hints for a model that does not fit are computed with the estimator.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.config.desired import ModelSpec
from reconciler.estimate.facts import ModelFacts
from reconciler.estimate.memory import MIB, estimate
from reconciler.plan.budget import GpuBudget
from reconciler.plan.options import ONE_GPU_BACKENDS, Option, most_mib, run_config
from reconciler.plan.search import Item
from reconciler.state import Instance

__all__ = ["Scene", "blocked", "displaced"]

HOLDERS_SHOWN = 4
PROGRAMS_SHOWN = 2  # the largest first


@dataclass(frozen=True)
class Scene:
    """What the reasons are computed from: one plan's inputs and its chosen assignment."""

    budgets: Sequence[GpuBudget]
    facts: Mapping[str, ModelFacts]
    problems: Mapping[str, str]
    items: Mapping[str, Item]  # by model, in priority order (highest first)
    chosen: Mapping[str, Option]
    max_per_gpu: int | None = None
    exact: bool = True  # whether the placement search was exact
    fresh: Mapping[str, tuple[Option, ...]] = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def order(self) -> dict[str, int]:
        return {name: k for k, name in enumerate(self.items)}

    def higher(self, a: str, b: str) -> bool:
        """Whether model a comes before model b in priority order."""
        return self.order[a] < self.order[b]


def displaced(scene: Scene, item: Item, now: Instance, shed: int | None) -> str | None:
    """Why a running model cannot stay where it is, when the cause is not another model of
    ours: its GPU is gone or not allowed, sheds load for heat, or another program took the
    memory it needs there."""
    budgets = scene.budgets
    gone = [b for b in budgets if b.label in now.gpus and not b.usable]
    if gone:
        return "; ".join(f"GPU {b.label}: {b.why_not}" for b in gone)
    if shed is not None:
        b = budgets[shed]
        return f"GPU {b.label} is {b.too_hot} and {item.name} is the lowest-priority model there"
    here = next((o for o in item.options if o.here), None)
    if here is None:
        return None
    for g, need in zip(here.gpus, here.mib, strict=True):
        b = budgets[g]
        # what our models running there hold now: when that no longer fits because other
        # programs took memory, this one (the lowest that must go) yields to them
        held = sum(
            n
            for other in scene.items.values()
            for o in other.options
            if o.here
            for gpu, n in zip(o.gpus, o.mib, strict=True)
            if gpu == g
        )
        held = max(held, need)
        if held > b.budget_mib and held <= b.budget_mib + b.foreign_mib:
            if not b.programs:
                unnamed = f"{b.foreign_mib} MiB on GPU {b.label}"
                return f"yielding to programs NVML does not name ({unnamed})"
            shown = b.programs[:PROGRAMS_SHOWN]
            more = len(b.programs) - len(shown)
            who = ", ".join(shown) + (f" and {more} more" if more else "")
            return f"yielding to {who} on GPU {b.label}"
    return None


def blocked(scene: Scene, m: ModelSpec, item: Item) -> str:
    """Why a desired model is not placed: what it needs, the most it could get, and what would
    make it fit (estimator hints, fallbacks) or who holds the room."""
    if m.name in scene.problems and m.vram_mib is None:
        return f"cannot be sized: {scene.problems[m.name]}"
    budgets = scene.budgets
    usable = [b for b in budgets if b.usable and b.named_in(m.pin)]
    if not item.options:
        if not usable:
            none = "" if budgets else " (no NVIDIA GPU)"
            return f"no usable GPU{none} and no CPU offload"
        hot = [b for b in usable if not b.startable]
        if len(hot) == len(usable):
            return "; ".join(f"GPU {b.label} is {b.too_hot}" for b in hot)
        return "no allowed GPU: check `pin` and `gpus`"
    running = {budgets[g].label for g in item.running or ()}
    room = [b for b in usable if b.startable or b.label in running]
    need = min(o.total_mib for o in item.options if o.variant == item.options[0].variant)
    if need == 0:  # only the CPU: host memory is what it lacks
        host = min(o.host_mib for o in item.options)
        return f"needs {host} MiB of host memory, more than is left beside the models placed"
    most = most_mib(m, [b.budget_mib for b in room])
    if need <= most:  # it would fit an empty machine: say what is left now, and who holds it
        left = _left(scene, item, room)
        return f"needs {need} MiB; {left}; {_full(scene, item)}{_holders(scene, item)}"
    one_gpu = m.backend in ONE_GPU_BACKENDS or m.split != "auto"
    reason = f"needs {need} MiB; the most {'one GPU' if one_gpu else 'any GPU set'} can give"
    reason += f" is {most} MiB"
    if most < need <= sum(b.budget_mib for b in room) and len(room) > 1:
        if m.backend in ONE_GPU_BACKENDS:  # the GPUs together would hold it: say why not
            reason += f" (backend {m.backend} runs on one GPU; split does not apply)"
        elif m.split != "auto":
            reason += " (split: never; `split: auto` would spread it over several GPUs)"
        elif m.backend == "vllm" and m.split == "auto":
            reason += " (backend vllm splits evenly over 2, 4 or 8 GPUs)"
    hot = [b for b in usable if b not in room and b.budget_mib >= need]
    if hot:
        reason += "; " + "; ".join(f"GPU {b.label} is {b.too_hot}" for b in hot)
    hints = _hints(m, scene.facts.get(m.name), most)
    if hints.startswith("fallbacks"):
        return f"{reason}; {hints}"
    return reason + (f"; would fit with {hints}" if hints else "")


def _left(scene: Scene, item: Item, room: Sequence[GpuBudget]) -> str:
    """The room left on the GPUs the model could use, the most first."""
    gpus = {g for o in item.options for g in o.gpus}
    used = dict.fromkeys(gpus, 0)
    for name, o in scene.chosen.items():
        if name != item.name:
            for g, n in zip(o.gpus, o.mib, strict=True):
                if g in used:
                    used[g] += n - o.margin_mib
    left = sorted(
        (
            (scene.budgets[g].budget_mib - used[g], scene.budgets[g].label)
            for g in gpus
            if scene.budgets[g] in room
        ),
        reverse=True,
    )
    shown = ", ".join(f"GPU {label} has {max(mib, 0)} MiB left" for mib, label in left[:2])
    return shown or "no GPU it may use has room"


def _full(scene: Scene, item: Item) -> str:
    """Whether every GPU the model could use already runs `max_models_per_gpu` models."""
    limit = scene.max_per_gpu
    gpus = {g for o in item.options for g in o.gpus}
    if limit is None or not gpus or any(not o.gpus for o in item.options):
        return ""
    count = {g: sum(g in o.gpus for o in scene.chosen.values()) for g in gpus}
    if all(n >= limit for n in count.values()):
        return f"every GPU it may use already runs max_models_per_gpu {limit}; "
    return ""


def _holders(scene: Scene, item: Item) -> str:
    """Who holds the GPUs the model could use: higher-priority models, or lower-priority ones
    kept where they run (`foreign_processes: ignore`)."""
    gpus = {g for o in item.options for g in o.gpus}
    held = []
    for name, o in scene.chosen.items():
        if name == item.name or not gpus & set(o.gpus):
            continue
        where = ", ".join(
            f"{n} MiB on GPU {scene.budgets[g].label}"
            for g, n in zip(o.gpus, o.mib, strict=True)
            if g in gpus
        )
        other = scene.items[name]
        if name not in scene.fresh:  # an instance only its label says is ours
            held.append(f"{name}, ours by its label only ({where}; never signalled)")
        elif scene.higher(name, item.name):
            held.append(f"higher-priority {name} ({where})")
        elif other.fixed:
            held.append(f"lower-priority {name} ({where}; kept: foreign_processes is ignore)")
        else:
            held.append(f"lower-priority {name} ({where})")
    if not held and not scene.exact:
        return "no assignment found within the search bound"
    if not held:
        return "the room is in pieces too small for it (each GPU of a split pays its overhead)"
    shown = held[:HOLDERS_SHOWN]
    more = f" and {len(held) - len(shown)} more" if len(held) > len(shown) else ""
    return "held by " + ", ".join(shown) + more


def _hints(m: ModelSpec, facts: ModelFacts | None, most: int) -> str:
    if facts is None:
        return ""
    out = []

    def need(**change: object) -> int:
        cfg = run_config(m, 1).model_copy(update=change)
        return -(-estimate(facts, cfg).device("cuda0").total // MIB)

    for cache in ("q8_0", "q4_0"):
        if cache != m.cache_type and need(cache_type_k=cache, cache_type_v=cache) <= most:
            out.append(f"cache_type: {cache}")
            break
    ctx = m.ctx // 2
    while ctx >= 1024 and need(ctx=ctx) > most:
        ctx //= 2
    if ctx >= 1024:
        out.append(f"ctx: {ctx}")
    for layers in range(facts.n_layer, 0, -1):
        if need(gpu_layers=layers) <= most:
            out.append(f"gpu_layers: {layers} (of {facts.n_layer + 1})")
            break
    text = " or ".join(out)
    if m.fallbacks:
        text += (
            ("; " if text else "") + "fallbacks " + ", ".join(m.fallbacks) + " do not fit either"
        )
    return text
