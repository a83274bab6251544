"""From desired + observed + model facts to a Plan: placement, then the diff, with reasons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconciler.estimate.facts import ModelFacts
from reconciler.estimate.memory import MIB, estimate
from reconciler.observe.state import Instance, ObservedState
from reconciler.plan.budget import GpuBudget, gpu_budgets
from reconciler.plan.model import Action, GpuLine, Plan
from reconciler.plan.options import Option, options_for, run_config
from reconciler.plan.solve import Item, solve
from reconciler.spec.desired import Desired, ModelSpec

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
    ignore = desired.policy.foreign_processes == "ignore"
    items, chains = [], {}
    for m in principals:
        chain = _chain(desired, m)
        chains[m.name] = chain
        usable = [v for v in (m, *chain) if v.name in facts or v.backend != "llama.cpp"]
        now = next((running[v.name] for v in (m, *chain) if v.name in running), None)
        options = []
        if usable:
            options = options_for(usable[0], usable[1:], facts, budgets)
        current = _current(budgets, now)
        options = [o for o in options if _startable(budgets, o, current)]
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
    actions: list[Action] = []
    for m, item in zip(principals, items, strict=True):
        chosen = solution.chosen.get(m.name)
        now = next((running[v.name] for v in (m, *chains[m.name]) if v.name in running), None)
        actions.append(
            _action(
                desired,
                m,
                item,
                chosen=chosen,
                now=now,
                budgets=budgets,
                facts=facts,
                problems=problems,
            )
        )
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
            note=b.why_not or ("too hot for new starts" if not b.startable else None),
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


def _action(
    desired: Desired,
    m: ModelSpec,
    item: Item,
    *,
    chosen: Option | None,
    now: Instance | None,
    budgets: Sequence[GpuBudget],
    facts: Mapping[str, ModelFacts],
    problems: Mapping[str, str],
) -> Action:
    if chosen is None:
        reason = _why_blocked(m, item, budgets=budgets, facts=facts, problems=problems)
        if now is not None:
            return Action(
                model=m.name,
                action="stop",
                variant=now.model,
                gpus=now.gpus,
                reason=f"evicted: {reason}",
            )
        return Action(model=m.name, action="blocked", reason=reason)
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
    if now.model != chosen.variant:
        reason = f"runs {chosen.variant} instead of {now.model}"
        return Action(action="restart", reason=reason, **base)
    changed = _changed(now.launch, launch_settings(spec))
    if changed:
        return Action(action="restart", reason=changed, **base)
    if set(now.gpus) != set(gpus):
        was = ", ".join(f"GPU {g}" for g in now.gpus) or "nowhere"
        reason = f"from {was} to {_where(budgets, chosen)}"
        return Action(action="move", reason=reason, **base)
    keep = "foreign_processes is ignore" if item.fixed else "fits"
    return Action(action="keep", reason=f"already on {_where(budgets, chosen)} ({keep})", **base)


def _changed(old: Mapping[str, str] | None, new: Mapping[str, str]) -> str:
    if old is None:
        return ""
    diffs = [
        f"{k} {old.get(k, '-')} -> {new.get(k, '-')}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]
    return "spec changed: " + "; ".join(diffs) if diffs else ""


def _why_blocked(
    m: ModelSpec,
    item: Item,
    *,
    budgets: Sequence[GpuBudget],
    facts: Mapping[str, ModelFacts],
    problems: Mapping[str, str],
) -> str:
    if m.name in problems and m.vram_mib is None:
        return f"cannot be sized: {problems[m.name]}"
    usable = [b for b in budgets if b.usable]
    if m.pin is not None:
        usable = [b for b in usable if any(ref in (b.index, b.uuid) for ref in m.pin)]
    if not item.options:
        if not usable:
            return "no usable GPU" + ("" if budgets else " (no NVIDIA GPU)") + " and no CPU offload"
        return "no allowed GPU: check `pin` and `gpus`"
    need = min(o.total_mib for o in item.options if o.variant == item.options[0].variant)
    most = max((b.budget_mib for b in usable), default=0)
    if m.split == "auto":
        most = max(most, sum(b.budget_mib for b in usable))
    reason = f"needs {need} MiB; the most any GPU set can give is {most} MiB"
    if need <= most:
        return reason + "; higher-priority models hold that room"
    hints = _hints(m, facts.get(m.name), most)
    if hints.startswith("fallbacks"):
        return f"{reason}; {hints}"
    return reason + (f"; would fit with {hints}" if hints else "")


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
