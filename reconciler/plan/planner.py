"""From desired + observed + model facts to a Plan: placement, then the diff, with reasons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconciler.config.desired import Desired, ModelSpec
from reconciler.estimate.facts import ModelFacts
from reconciler.plan.budget import GpuBudget, gpu_budgets
from reconciler.plan.model import Action, GpuLine, Plan
from reconciler.plan.options import Option, options_for
from reconciler.plan.reasons import Scene, blocked, changed, displaced
from reconciler.plan.solve import Item, solve
from reconciler.state import Instance, ObservedState

__all__ = ["launch_settings", "make_plan", "variants_of"]

HOST_RESERVE = 0.10  # of host RAM, never planned for layers left on the CPU
LAUNCH_KEYS = (
    "backend",
    "gguf",
    "model",
    "argv",
    "ctx",
    "parallel",
    "cache_type",
    "flash_attn",
    "gpu_layers",
    "host",
    "port",
    "env",
    "extra_args",
)


def launch_settings(m: ModelSpec) -> dict[str, str]:
    """What a restart depends on, as text (the journal stores the same)."""
    data = m.model_dump(mode="json")
    return {k: str(data[k]) for k in LAUNCH_KEYS if data.get(k) not in (None, [], {})}


def variants_of(desired: Desired) -> set[str]:
    """Entries named as someone's fallback: they run only in place of that entry."""
    return {name for m in desired.models for name in m.fallbacks}


def _chain(desired: Desired, m: ModelSpec) -> list[ModelSpec]:
    out, seen, todo = [], {m.name}, list(m.fallbacks)
    while todo:
        name = todo.pop(0)
        spec = desired.model_named(name)
        if spec is None or name in seen:
            continue
        seen.add(name)
        out.append(spec)
        todo.extend(spec.fallbacks)
    return out


def _labels(budgets: Sequence[GpuBudget], o: Option) -> tuple[str, ...]:
    return tuple(budgets[g].label for g in o.gpus)


def _where(budgets: Sequence[GpuBudget], o: Option) -> str:
    if not o.gpus:
        return "the CPU"
    names = " + ".join(f"GPU {budgets[g].label}" for g in o.gpus)
    return names if o.gpu_layers in ("all", None) else f"{names} ({o.gpu_layers} layers)"


def _estimate(budgets: Sequence[GpuBudget], o: Option) -> dict[str, int]:
    out = {f"gpu{budgets[g].label}": mib for g, mib in zip(o.gpus, o.mib, strict=True)}
    return {**out, "host": o.host_mib}


def make_plan(
    desired: Desired,
    observed: ObservedState,
    facts: Mapping[str, ModelFacts],
    problems: Mapping[str, str] | None = None,
) -> Plan:
    """The plan. `facts` holds each GGUF model's facts; `problems` why a model has none."""
    problems = problems or {}
    budgets = gpu_budgets(desired, observed)
    variants = variants_of(desired)
    principals = sorted(
        (m for m in desired.models if m.name not in variants),
        key=lambda m: (-m.priority, desired.models.index(m)),
    )
    running = {i.model: i for i in observed.instances if i.state == "running"}
    chains = {m.name: _chain(desired, m) for m in principals}
    now_of = {
        m.name: next((running[v.name] for v in (m, *chains[m.name]) if v.name in running), None)
        for m in principals
    }
    shed = _shedding(budgets, principals, now_of)
    ignore = desired.policy.foreign_processes == "ignore"
    items = []
    for m in principals:
        chain = chains[m.name]
        usable = [v for v in (m, *chain) if v.name in facts or v.backend != "llama.cpp"]
        now = now_of[m.name]
        options = []
        if usable:
            options = options_for(usable[0], usable[1:], facts, budgets)
        current = _current(budgets, now)
        options = [
            o
            for o in options
            if _startable(budgets, o, current)
            and (m.name not in shed or shed[m.name] not in o.gpus)
        ]
        fixed_option = next((o for o in options if current and o.gpus == current), None)
        fixed = ignore and fixed_option is not None
        item_options = (fixed_option,) if fixed and fixed_option else tuple(options)
        items.append(Item(m.name, item_options, running=current, fixed=fixed))
    host = int(observed.host.ram_available_mib - HOST_RESERVE * observed.host.ram_total_mib)
    solution = solve(
        items,
        [b.budget_mib for b in budgets],
        max(host, 0),
        max_per_gpu=desired.policy.max_models_per_gpu,
        placement=desired.policy.placement,
    )
    scene = Scene(
        budgets=budgets,
        facts=facts,
        problems=problems,
        items={i.name: i for i in items},
        chosen=solution.chosen,
        max_per_gpu=desired.policy.max_models_per_gpu,
    )
    actions = [
        _action(desired, scene, m, now=now_of[m.name], shed=shed.get(m.name)) for m in principals
    ]
    wanted = {m.name for m in desired.models}
    for inst in observed.instances:
        if inst.state == "running" and inst.model not in wanted:
            actions.append(
                Action(
                    model=inst.model,
                    action="stop",
                    gpus=inst.gpus,
                    reason="no longer desired (not in the desired file)",
                )
            )
    planned = [0] * len(budgets)
    for o in solution.chosen.values():
        for g, mib in zip(o.gpus, o.mib, strict=True):
            planned[g] += mib
    lines = tuple(
        GpuLine(
            label=b.label,
            name=b.name,
            total_mib=b.total_mib,
            reserve_mib=b.reserve_mib,
            foreign_mib=b.foreign_mib,
            budget_mib=b.budget_mib,
            planned_mib=planned[i],
            note=b.why_not or b.too_hot,
        )
        for i, b in enumerate(budgets)
    )
    notes = [] if budgets else [observed.gpu_note or "no NVIDIA GPU: models run on the CPU"]
    if not solution.exact:
        notes.append("the placement search hit its bound; the result may not be optimal")
    return Plan(
        observed=observed.fingerprint(),
        source=observed.source,
        gpus=lines,
        actions=tuple(actions),
        exact=solution.exact,
        notes=tuple(notes),
    )


def _current(budgets: Sequence[GpuBudget], now: Instance | None) -> tuple[int, ...] | None:
    if now is None:
        return None
    return tuple(i for i, b in enumerate(budgets) if b.label in now.gpus)


def _startable(budgets: Sequence[GpuBudget], o: Option, current: tuple[int, ...] | None) -> bool:
    return all(budgets[g].startable for g in o.gpus) or o.gpus == current


def _shedding(
    budgets: Sequence[GpuBudget],
    principals: Sequence[ModelSpec],
    now_of: Mapping[str, Instance | None],
) -> dict[str, int]:
    """Above evict_above_c a GPU sheds its lowest-priority running model, one per plan (the
    next plan, on the next observation, sheds another if it is still too hot): model -> GPU."""
    out: dict[str, int] = {}
    for g, b in enumerate(budgets):
        if not b.sheds:
            continue
        for m in reversed(principals):
            now = now_of[m.name]
            if now is not None and b.label in now.gpus:
                out.setdefault(m.name, g)
                break
    return out


def _action(
    desired: Desired, scene: Scene, m: ModelSpec, *, now: Instance | None, shed: int | None
) -> Action:
    budgets, item = scene.budgets, scene.items[m.name]
    chosen = scene.chosen.get(m.name)
    cause = displaced(scene, item, now, shed) if now is not None else None
    if chosen is None:
        reason = blocked(scene, m, item)
        if now is None:
            return Action(model=m.name, action="blocked", reason=reason)
        if cause is None:
            reason = f"evicted: {reason}"
        elif cause.startswith("yielding"):
            reason = f"{cause}; {reason}"
        elif item.options:
            reason = f"evicted: {cause}; nowhere else to go: {reason}"
        else:
            reason = f"evicted: {cause}"
        return Action(model=m.name, action="stop", variant=now.model, gpus=now.gpus, reason=reason)
    gpus = _labels(budgets, chosen)
    base = {
        "model": m.name,
        "variant": chosen.variant,
        "gpus": gpus,
        "tensor_split": chosen.tensor_split,
        "gpu_layers": chosen.gpu_layers,
        "estimate_mib": _estimate(budgets, chosen),
    }
    spec = desired.model_named(chosen.variant) or m
    fallback = "" if chosen.variant == m.name else f"{m.name} does not fit; fallback "
    if now is None:
        room = ", ".join(
            f"GPU {budgets[g].label} {need}/{budgets[g].budget_mib} MiB"
            for g, need in zip(chosen.gpus, chosen.mib, strict=True)
        )
        reason = f"{fallback}{chosen.variant} fits on {_where(budgets, chosen)}" + (
            f" ({room})" if room else ""
        )
        return Action(action="start", reason=reason, **base)
    because = f" ({cause})" if cause else ""
    if now.model != chosen.variant:
        reason = f"runs {chosen.variant} instead of {now.model}{because}"
        return Action(action="restart", reason=reason, **base)
    spec_change = changed(now.launch, launch_settings(spec))
    if spec_change:
        return Action(action="restart", reason=spec_change, **base)
    if set(now.gpus) != set(gpus):
        was = ", ".join(f"GPU {g}" for g in now.gpus) or "nowhere"
        reason = f"from {was} to {_where(budgets, chosen)}{because}"
        return Action(action="move", reason=reason, **base)
    keep = "foreign_processes is ignore" if item.fixed else "fits"
    return Action(action="keep", reason=f"already on {_where(budgets, chosen)} ({keep})", **base)
