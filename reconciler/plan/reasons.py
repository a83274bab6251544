"""Why: the words of a plan's reasons for what cannot run, what must step aside, what changed.

Every reason is computed from the same data the solver saw (budgets, options, the chosen
assignment). A model that would fit an empty machine is compared with the room left now on
the GPU that could take it, and that room's holders are named, the largest first: our models
with their priority ("earlier in the file" where the priorities are equal), other programs
with their pid. What would make a model fit (`hints.py`) is checked with the estimator.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.config.desired import ModelSpec
from reconciler.estimate.facts import ModelFacts
from reconciler.plan.budget import GpuBudget
from reconciler.plan.hints import hints
from reconciler.plan.options import ONE_GPU_BACKENDS, Option, most_mib
from reconciler.plan.search import Item
from reconciler.state import Instance

__all__ = ["Scene", "blocked", "displaced", "own_mib"]

HOLDERS_SHOWN = 3  # per GPU, the largest first
PROGRAMS_SHOWN = 2  # the largest first
FULL_SHOWN = 4  # GPUs named when every one runs max_models_per_gpu
# models per plan given hints (each costs a few estimates: 1 to 3 ms); a real file has a few
HINTED_MODELS = 32


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
    priorities: Mapping[str, int] = dataclasses.field(default_factory=dict)  # desired models
    unmanaged: frozenset[str] = frozenset()  # desired models served by a label-only instance
    host_mib: int = 0  # host memory the plan may use for layers left on the CPU
    # the hints given so far, by model: at most HINTED_MODELS are computed per plan
    hinted: dict[str, str] = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def order(self) -> dict[str, int]:
        return {name: k for k, name in enumerate(self.items)}

    def higher(self, a: str, b: str) -> bool:
        """Whether model a comes before model b in priority order."""
        return self.order[a] < self.order[b]

    def room_now(self, name: str, *, above: bool = False) -> dict[int, int]:
        """MiB left on each usable GPU once every chosen option but `name`'s is placed; with
        `above`, only those of models before it in priority order and of instances kept as
        they run (what the solver would leave it)."""
        left = {g: b.budget_mib for g, b in enumerate(self.budgets) if b.usable}
        for _other, o in self._others(name, above=above):
            for g, n in zip(o.gpus, own_mib(o), strict=True):
                if g in left:
                    left[g] -= n
        return {g: max(n, 0) for g, n in left.items()}

    def host_now(self, name: str, *, above: bool = False) -> int:
        """Host MiB left once every chosen option but `name`'s is placed (`above`: as for
        `room_now`)."""
        used = sum(o.host_mib for _other, o in self._others(name, above=above))
        return max(self.host_mib - used, 0)

    def _others(self, name: str, *, above: bool) -> list[tuple[str, Option]]:
        return [
            (other, o)
            for other, o in self.chosen.items()
            if other != name and (not above or self.items[other].fixed or self.higher(other, name))
        ]


def own_mib(o: Option) -> tuple[int, ...]:
    """An option's memory on each of its GPUs, without the margin an upgrade must leave."""
    return tuple(n - o.margin_mib for n in o.mib)


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
        return f"GPU {b.label} is {b.too_hot} and {item.name} is {_last_there(scene, item, shed)}"
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


def _last_there(scene: Scene, item: Item, g: int) -> str:
    """Why this model is the one a hot GPU sheds: the lowest priority there, or of equal
    priorities the last in the file."""
    mine = scene.priorities.get(item.name)
    tied = [
        other.name
        for other in scene.items.values()
        if other.name != item.name
        and other.running is not None
        and g in other.running
        and scene.priorities.get(other.name, mine) == mine
    ]
    if mine is None or not tied:
        return "the lowest-priority model there"
    return f"the last in the file of the models of priority {mine} there"


def blocked(scene: Scene, m: ModelSpec, item: Item, *, hinted: bool = True) -> str:
    """Why a desired model is not placed: what it needs, the room left now on the GPU that
    could take it and who holds that room, or the most an empty machine could give; and
    (`hinted`) what would make it fit beside the models before it (estimator hints)."""
    if m.name in scene.problems and m.vram_mib is None:
        return f"cannot be sized: {scene.problems[m.name]}"
    budgets = scene.budgets
    usable = [g for g, b in enumerate(budgets) if b.usable and b.named_in(m.pin)]
    if not item.options:
        if not usable:
            if m.pin is not None and any(b.usable for b in budgets):
                pins = ", ".join(str(ref) for ref in m.pin)
                return f"no usable GPU is named in its `pin: [{pins}]` and no CPU offload"
            none = "" if budgets else " (no NVIDIA GPU)"
            return f"no usable GPU{none} and no CPU offload"
        hot = [budgets[g] for g in usable if not budgets[g].startable]
        if len(hot) == len(usable):
            return "; ".join(f"GPU {b.label} is {b.too_hot}" for b in hot)
        return "no allowed GPU: check `pin` and `gpus`"
    running = {budgets[g].label for g in item.running or ()}
    room = [g for g in usable if budgets[g].startable or budgets[g].label in running]
    primary = [o for o in item.options if o.variant == item.options[0].variant]
    need = min(sum(own_mib(o)) for o in primary)
    others = _fallbacks(item)
    if need == 0:  # only the CPU: host memory is what it lacks
        host = min(o.host_mib for o in item.options)
        return f"needs {host} MiB of host memory, more than is left beside the models placed"
    most = most_mib(m, [budgets[g].budget_mib for g in room])
    if need <= most:  # it would fit an empty machine: the room left now, and who holds it
        return _short_now(scene, m, item, primary, room, hinted=hinted) + others
    one_gpu = m.backend in ONE_GPU_BACKENDS or m.split != "auto"
    giver = "one GPU" if one_gpu else "any GPU set"
    if len(room) == 1:
        giver = f"GPU {budgets[room[0]].label}"
    reason = f"needs {need} MiB; the most {giver} can give is {most} MiB"
    if most < need <= sum(budgets[g].budget_mib for g in room) and len(room) > 1:
        if m.backend in ONE_GPU_BACKENDS:  # the GPUs together would hold it: say why not
            reason += f" (backend {m.backend} runs on one GPU; split does not apply)"
        elif m.split != "auto":
            reason += " (split: never; `split: auto` would spread it over several GPUs)"
        elif m.backend == "vllm" and m.split == "auto":
            reason += " (backend vllm splits evenly over 2, 4 or 8 GPUs)"
    taking = set(room)
    hot = [budgets[g] for g in usable if g not in taking and budgets[g].budget_mib >= need]
    if hot:
        reason += "; " + "; ".join(f"GPU {b.label} is {b.too_hot}" for b in hot)
    return reason + (_would_fit(scene, m, item.name, room) if hinted else "") + others


def _would_fit(scene: Scene, m: ModelSpec, name: str, gpus: Sequence[int]) -> str:
    """`; would fit with ctx: 8192 or ...`: changes that fit beside the models before it."""
    key = f"{name}/{m.name}"
    if key not in scene.hinted:
        if len(scene.hinted) >= HINTED_MODELS:
            return f"; no hints past the first {HINTED_MODELS} models that do not fit"
        left = scene.room_now(name, above=True)
        room = {g: left[g] for g in gpus if g in left}
        host = scene.host_now(name, above=True)
        found = hints(m, scene.facts.get(m.name), scene.budgets, room, host)
        scene.hinted[key] = f"; would fit with {' or '.join(found)}" if found else ""
    return scene.hinted[key]


def _fallbacks(item: Item) -> str:
    variants = list(dict.fromkeys(o.variant for o in item.options))
    if len(variants) == 1:
        return ""
    return "; fallbacks " + ", ".join(variants[1:]) + " do not fit either"


def _short_now(
    scene: Scene,
    m: ModelSpec,
    item: Item,
    primary: Sequence[Option],
    room: Sequence[int],
    *,
    hinted: bool,
) -> str:
    """A model that would fit an empty machine: the placement closest to fitting now (one GPU
    before a split), the room left there and who holds it."""
    budgets = scene.budgets
    left = scene.room_now(item.name)
    full = _full(scene, item)
    if full:
        return f"needs {min(sum(own_mib(o)) for o in primary)} MiB; {full}"
    allowed = set(room)
    fitting = [
        o
        for o in primary
        if o.gpus and all(g in allowed and n <= budgets[g].budget_mib for g, n in _pieces(o))
    ]
    if not fitting:
        need = min(sum(own_mib(o)) for o in primary)
        if not scene.exact:
            return f"needs {need} MiB; no assignment found within the search bound"
        return (
            f"needs {need} MiB; the room is in pieces too small for it "
            "(each GPU of a split pays its overhead)"
        )

    def short(o: Option) -> int:
        return sum(max(n - left[g], 0) for g, n in zip(o.gpus, o.mib, strict=True))

    # one GPU before a split (the planner's order), then the closest to fitting
    best = min(fitting, key=lambda o: (o.rank, short(o), -sum(left[g] for g in o.gpus)))
    mib = own_mib(best)
    where = " + ".join(f"GPU {budgets[g].label}" for g in best.gpus)
    sizes = " + ".join(str(n) for n in mib)
    text = f"needs {sizes} MiB" + (f" on {where}" if len(best.gpus) > 1 else "")
    if best.gpu_layers not in ("all", None):
        text += f" with {best.gpu_layers} layers on the GPU"
    rooms = "; ".join(
        f"GPU {budgets[g].label} has {left[g]} MiB left"
        + (_after(scene, item.name, g, n - left[g]) if n > left[g] else "")
        for g, n in zip(best.gpus, best.mib, strict=True)
    )
    text += f"; {rooms}"
    host = scene.host_now(item.name)
    if short(best) == 0 and best.host_mib > host:
        text += f"; it also needs {best.host_mib} MiB of host memory, and {host} MiB is left"
    elif short(best) == 0 and not scene.exact:
        text += "; no assignment found within the search bound"
    if best.margin_mib and all(n <= left[g] for g, n in _pieces(best)):
        text += f"; an upgrade must leave {best.margin_mib} MiB to spare on each GPU"
    elif short(best) > 0 and hinted:
        text += _would_fit(scene, m, item.name, room)
    return text


def _pieces(o: Option) -> zip[tuple[int, int]]:
    return zip(o.gpus, own_mib(o), strict=True)


def _after(scene: Scene, name: str, g: int, short: int) -> str:
    """` after chat (priority 100, 16000 MiB) and 2 other programs (600 MiB)`: who holds GPU
    g's room, the largest first, at most `HOLDERS_SHOWN` named: our models (whose priorities
    decide), and other programs until those named hold the `short` MiB the model lacks; the
    others counted."""
    held = sorted(_holders(scene, name, g), key=lambda h: -h[0])
    shown: list[tuple[int, str, str]] = []
    covered = 0
    for h in held:
        if len(shown) < HOLDERS_SHOWN and (h[2] == "model" or covered < short):
            shown.append(h)
            covered += h[0]
    rest = [h for h in held if h not in shown]
    if len(rest) == 1:  # named in the room its count would take
        shown.append(rest.pop())
    texts = [text for _mib, text, _kind in sorted(shown, key=lambda h: -h[0])]
    if rest:
        models = sum(kind == "model" for _mib, _text, kind in rest)
        programs = sum(kind == "program" for _mib, _text, kind in rest)
        parts = [f"{models} more model{'s' * (models > 1)}"] if models else []
        parts += [f"{programs} other program{'s' * (programs > 1)}"] if programs else []
        parts += ["memory NVML attributes to no process"] if len(rest) > models + programs else []
        listed = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
        texts.append(f"{listed} ({sum(mib for mib, _text, _kind in rest)} MiB)")
    if not texts:
        return ""
    last = texts.pop()
    return " after " + (", ".join(texts) + " and " if texts else "") + last


def _holders(scene: Scene, name: str, g: int) -> list[tuple[int, str, str]]:
    """What holds GPU g's room but `name`: (MiB, who, kind): our other models placed there
    ("model"), other programs ("program"), and memory NVML attributes to no process (the
    driver's own, a process it does not list: "unnamed")."""
    out = []
    for other, o in scene.chosen.items():
        if other != name and g in o.gpus:
            mib = own_mib(o)[o.gpus.index(g)]
            out.append((mib, _who(scene, other, o, name, mib), "model"))
    b = scene.budgets[g]
    sizes = b.program_mib or (None,) * len(b.programs)
    named = 0
    for text, size in zip(b.programs, sizes, strict=True):
        out.append((size or 0, text, "program"))
        named += size or 0
    if b.foreign_mib > named:
        unnamed = b.foreign_mib - named
        out.append((unnamed, f"{unnamed} MiB NVML attributes to no process", "unnamed"))
    return out


def _who(scene: Scene, other: str, o: Option, name: str, mib: int) -> str:
    """One of our models holding room: its priority against `name`'s."""
    if other not in scene.priorities:  # "model (pid N)": an instance only its label says is ours
        return f"{other.removesuffix(')')}, {mib} MiB, ours by its label only: never signalled)"
    shown = other if o.variant == other else f"{other} as {o.variant}"
    priority = scene.priorities[other]
    facts = [f"priority {priority}"]
    earlier = scene.higher(other, name)
    if priority == scene.priorities.get(name):
        facts.append("earlier in the file" if earlier else "later in the file")
    facts.append(f"{mib} MiB")
    if other in scene.unmanaged:
        facts.append("ours by its label only: never signalled")
    elif scene.items[other].fixed and not earlier:
        facts.append("kept where it runs: foreign_processes is ignore")
    return f"{shown} ({', '.join(facts)})"


def _full(scene: Scene, item: Item) -> str:
    """Whether every GPU the model could use already runs `max_models_per_gpu` models: which
    ones run there."""
    limit = scene.max_per_gpu
    gpus = sorted({g for o in item.options for g in o.gpus})
    if limit is None or not gpus or any(not o.gpus for o in item.options):
        return ""
    there = {g: [n for n, o in scene.chosen.items() if g in o.gpus] for g in gpus}
    if any(len(names) < limit for names in there.values()):
        return ""
    shown = [f"GPU {scene.budgets[g].label}: {', '.join(there[g])}" for g in gpus[:FULL_SHOWN]]
    more = f"; {len(gpus) - FULL_SHOWN} more" if len(gpus) > FULL_SHOWN else ""
    return (
        f"every GPU it may use already runs max_models_per_gpu {limit} ({'; '.join(shown)}{more})"
    )
