"""Placement: which option each desired model gets, given what runs now.

What runs is charged once and correctly before anything is placed:
- one instance per model: of the instances of a model and its fallbacks, the one the journal
  knows, of the most preferred variant, oldest first, is the model's instance; the others are
  extras (stopped, or left alone and counted when only their label says they are ours);
- a running instance is charged the larger of its estimate (the journal's, else computed from
  the launch it was started with) and what NVML measures, on the GPUs it runs on; where the
  driver does not report its memory it is charged its estimate, as ours, never as a foreign
  program's;
- its host memory is given back to the host budget before it is charged again (the host's
  "available" already lacks it).

Each model's options (from `options.py`) are then marked: the one that is the instance as it
runs now (same GPUs, same launch hash) is `here`, charged what it holds and preferred to any
other of its preference class (running models stay where they are, also when split). An
instance started with settings the desired file no longer asks for is kept as an option of
its own, ranked after every option of its variant: a restart that does not fit keeps what runs.
An option better than the one that runs (an upgrade: the model back from a fallback, more
layers on the GPU) must fit with `UPGRADE_MARGIN_MIB` to spare on each GPU, so that it does not
flap. A GPU above `shed_above_c` takes no option but the one that runs there now.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.config.desired import Desired, ModelSpec
from reconciler.estimate.facts import ModelFacts
from reconciler.plan.budget import GpuBudget, gpu_budgets
from reconciler.plan.charges import Charge, charge_of
from reconciler.plan.options import (
    AS_IS_RANK,
    VARIANT_RANK,
    Option,
    layer_rank,
    options_for,
)
from reconciler.plan.resolve import launch_for
from reconciler.plan.solve import Item, Solution, solve
from reconciler.state import Instance, ObservedState

__all__ = ["HOST_RESERVE", "UPGRADE_MARGIN_MIB", "Placement", "place", "variants_of"]

HOST_RESERVE = 0.10  # of host RAM, never planned for layers left on the CPU
UPGRADE_MARGIN_MIB = 512  # per GPU, for an option better than the one that runs


@dataclass
class Placement:
    """One plan's decision and everything the diff and the reasons need to explain it."""

    budgets: tuple[GpuBudget, ...]
    principals: list[ModelSpec]  # desired models that are not only variants, priority order
    chains: dict[str, list[ModelSpec]]  # principal -> its fallbacks, in order
    now: dict[str, Instance | None]  # principal -> the instance that serves it now
    extras: list[tuple[Instance, str]]  # a second instance of a model, and whose it is
    strays: list[Instance]  # running instances of models no longer desired
    items: dict[str, Item]  # by name, in priority order (unmanaged instances first)
    fresh: dict[str, tuple[Option, ...]]  # principal -> options of the desired settings
    charges: dict[int, Charge]  # pid -> what the instance holds
    solution: Solution
    shed: Mapping[str, int]  # principal -> GPU position it must leave for heat
    host_mib: int
    notes: list[str] = field(default_factory=list)


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


def unmanaged_name(inst: Instance) -> str:
    """The solver's name for an instance we may not touch (it has no desired entry)."""
    return f"{inst.model} (pid {inst.pid})"


def _who_runs(
    desired: Desired,
    principals: Sequence[ModelSpec],
    chains: Mapping[str, list[ModelSpec]],
    observed: ObservedState,
) -> tuple[dict[str, Instance | None], list[tuple[Instance, str]], list[Instance]]:
    """One instance per model: the one that serves each principal, the extras (a second
    instance of a model, or a model and its fallback together), and strays (not desired)."""
    family = {m.name: [m.name, *(v.name for v in chains[m.name])] for m in principals}
    owner: dict[str, str] = {}
    for m in principals:
        for name in family[m.name]:
            owner.setdefault(name, m.name)
    by_principal: dict[str, list[Instance]] = {m.name: [] for m in principals}
    strays: list[Instance] = []
    for inst in observed.instances:
        if inst.state != "running":
            continue
        if inst.model in owner:
            by_principal[owner[inst.model]].append(inst)
        else:
            strays.append(inst)
    now: dict[str, Instance | None] = {}
    extras: list[tuple[Instance, str]] = []
    for m in principals:
        names = family[m.name]
        ranked = sorted(
            by_principal[m.name],
            key=lambda i: (not i.adopted, names.index(i.model), i.start_time, i.pid),
        )
        now[m.name] = ranked[0] if ranked else None
        extras += [(i, m.name) for i in ranked[1:]]
    return now, extras, strays


def _item(
    desired: Desired,
    m: ModelSpec,
    options: list[Option],
    context: _Context,
) -> Item:
    """The solver's view of one desired model: its options, the one that runs marked."""
    budgets = context.budgets
    inst = context.now[m.name]
    if inst is None:
        return Item(m.name, tuple(o for o in options if _startable(budgets, o)))
    options = _mark_here(
        desired, m, inst, context.charges[inst.pid], options, facts=context.facts, budgets=budgets
    )
    shed = context.shed.get(m.name)
    options = [o for o in options if (o.here or _startable(budgets, o)) and (shed not in o.gpus)]
    here = next((o for o in options if o.here), None)
    if here is None:
        return Item(m.name, tuple(options))
    ignore = desired.policy.foreign_processes == "ignore"
    fixed = not inst.adopted or (ignore and _sticks(here, budgets))
    return Item(m.name, (here,) if fixed else tuple(options), running=here.gpus, fixed=fixed)


@dataclass(frozen=True)
class _Context:
    budgets: tuple[GpuBudget, ...]
    now: Mapping[str, Instance | None]
    charges: Mapping[int, Charge]
    facts: Mapping[str, ModelFacts]
    shed: Mapping[str, int]


def _raised(budgets: tuple[GpuBudget, ...], items: Sequence[Item]) -> tuple[GpuBudget, ...]:
    """Budgets raised where instances kept as they run (ours by label only, or kept by
    `foreign_processes: ignore`) hold more than the budget: what they hold is there."""
    kept = [0] * len(budgets)
    for item in items:
        if item.fixed:
            for g, mib in zip(item.options[0].gpus, item.options[0].mib, strict=True):
                kept[g] += mib
    return tuple(
        dataclasses.replace(b, budget_mib=k, raised=True) if b.usable and k > b.budget_mib else b
        for b, k in zip(budgets, kept, strict=True)
    )


def place(
    desired: Desired,
    observed: ObservedState,
    facts: Mapping[str, ModelFacts],
) -> Placement:
    variants = variants_of(desired)
    principals = sorted(
        (m for m in desired.models if m.name not in variants),
        key=lambda m: (-m.priority, desired.models.index(m)),
    )
    chains = {m.name: _chain(desired, m) for m in principals}
    now, extras, strays = _who_runs(desired, principals, chains, observed)
    running = [i for i in observed.instances if i.state == "running"]
    charges = {i.pid: charge_of(i, desired, facts) for i in running}
    unreported: dict[str, int] = {}
    for c in charges.values():
        for g, mib in zip(c.gpus, c.mib, strict=True):
            if g in c.unreported:
                unreported[g] = unreported.get(g, 0) + mib
    budgets = gpu_budgets(desired, observed, unreported)
    position = {b.label: k for k, b in enumerate(budgets)}
    context = _Context(budgets, now, charges, facts, _shedding(budgets, principals, now))
    items: list[Item] = []
    # Instances only their label says are ours: never signalled, so they stay and are counted.
    untouchable = [i for i, _p in extras if not i.adopted] + [i for i in strays if not i.adopted]
    for inst in untouchable:
        o = _as_is(inst, charges[inst.pid], position, rank=0)
        if o is not None:
            items.append(Item(unmanaged_name(inst), (o,), running=o.gpus, fixed=True))
    fresh: dict[str, tuple[Option, ...]] = {}
    for m in principals:
        usable = [v for v in (m, *chains[m.name]) if v.name in facts or v.backend != "llama.cpp"]
        options = options_for(usable[0], usable[1:], facts, budgets) if usable else []
        fresh[m.name] = tuple(options)
        items.append(_item(desired, m, options, context))
    budgets = _raised(budgets, items)
    given_back = sum(c.host_mib for c in charges.values())
    host = int(
        observed.host.ram_available_mib + given_back - HOST_RESERVE * observed.host.ram_total_mib
    )
    solution = solve(
        items,
        [b.budget_mib if b.usable else 0 for b in budgets],
        max(host, 0),
        max_per_gpu=desired.policy.max_models_per_gpu,
        placement=desired.policy.placement,
    )
    return Placement(
        budgets=budgets,
        principals=principals,
        chains=chains,
        now=now,
        extras=extras,
        strays=strays,
        items={i.name: i for i in items},
        fresh=fresh,
        charges=charges,
        solution=solution,
        shed=context.shed,
        host_mib=max(host, 0),
    )


def _startable(budgets: Sequence[GpuBudget], o: Option) -> bool:
    return all(budgets[g].startable for g in o.gpus)


def _sticks(here: Option, budgets: Sequence[GpuBudget]) -> bool:
    """With `foreign_processes: ignore`, an instance stays where it runs whatever other
    programs took, unless it was started with settings the file no longer asks for and would
    fit where it is anyway (then it competes like any model, and restarts if the new settings
    fit)."""
    if here.rank % VARIANT_RANK != AS_IS_RANK:
        return True
    return any(need > budgets[g].budget_mib for g, need in zip(here.gpus, here.mib, strict=True))


def _as_is(inst: Instance, charge: Charge, position: Mapping[str, int], rank: int) -> Option | None:
    """The instance as it runs: where it is, charged what it holds."""
    if any(g not in position for g in charge.gpus):
        return None  # on a GPU not observed now (lost): nothing of it to count here
    launch = inst.launch
    return Option(
        variant=inst.model,
        gpus=tuple(position[g] for g in charge.gpus),
        mib=charge.mib,
        host_mib=charge.host_mib,
        tensor_split=launch.tensor_split if launch is not None else None,
        gpu_layers=launch.gpu_layers if launch and launch.gpu_layers is not None else "all",
        rank=rank,
        tensor_parallel=launch.tensor_parallel if launch is not None else None,
        here=True,
        launch=launch,
    )


def _mark_here(
    desired: Desired,
    m: ModelSpec,
    inst: Instance,
    charge: Charge,
    options: list[Option],
    *,
    facts: Mapping[str, ModelFacts],
    budgets: Sequence[GpuBudget],
) -> list[Option]:
    """The options with the one that runs now marked `here` (or added), upgrades margined."""
    position = {b.label: k for k, b in enumerate(budgets)}
    spec = desired.model_named(inst.model) or m
    current = tuple(position.get(g, -1) for g in charge.gpus)
    same = [o for o in options if o.variant == inst.model and o.gpus == current]
    match: Option | None = None
    if inst.launch is None:  # started before launches were recorded: assume it is as desired
        match = same[0] if same else None
    else:
        running_hash = inst.launch.hash
        fact = facts.get(inst.model)
        match = next(
            (o for o in same if launch_for(m, spec, o, fact, budgets).hash == running_hash), None
        )
    base = next((o.rank for o in options if o.variant == inst.model), None)
    here: Option | None
    if match is not None:
        inside = match.rank % VARIANT_RANK
        here = dataclasses.replace(
            match,
            mib=charge.mib,
            host_mib=charge.host_mib,
            rank=match.rank if inside > 1 else match.rank - inside,  # stays, also when split
            here=True,
        )
        out = [o for o in options if o is not match]
    else:
        rank = _as_is_rank(m, spec, inst, options, facts=facts, budgets=budgets, base=base)
        here = _as_is(inst, charge, position, rank)
        fact = facts.get(inst.model)
        if here is not None and fact is not None and here.gpu_layers == fact.n_layer + 1:
            here = dataclasses.replace(here, gpu_layers="all")
        out = list(options)
    if here is None:
        return out
    margined = [
        o
        if o.rank >= here.rank
        else dataclasses.replace(
            o,
            mib=tuple(n + UPGRADE_MARGIN_MIB for n in o.mib),
            margin_mib=UPGRADE_MARGIN_MIB if o.gpus else 0,
        )
        for o in out
    ]
    return sorted([*margined, here], key=lambda o: (o.rank, not o.here))


def _as_is_rank(
    m: ModelSpec,
    spec: ModelSpec,
    inst: Instance,
    options: Sequence[Option],
    *,
    facts: Mapping[str, ModelFacts],
    budgets: Sequence[GpuBudget],
    base: int | None,
) -> int:
    """Where an instance whose launch matches no option ranks among its variant's options:
    by its layers when only the layers (or the split) differ from the desired settings, after
    every option of its variant when the desired settings changed."""
    if base is None:  # its variant cannot be sized now: after everything of the model
        return max((o.rank for o in options), default=0) + AS_IS_RANK
    base -= base % VARIANT_RANK
    launch = inst.launch
    fact = facts.get(inst.model)
    if launch is None or fact is None or not launch.gpus:
        return base + AS_IS_RANK
    probe = Option(inst.model, (), (), 0)
    wanted = launch_for(m, spec, probe, fact, budgets)
    drift = {d.split(" ", 1)[0] for d in launch.differences(wanted)}
    if not drift <= {"gpu_layers", "tensor_split"}:
        return base + AS_IS_RANK
    layers = launch.gpu_layers if launch.gpu_layers is not None else fact.n_layer + 1
    if layers >= fact.n_layer + 1:
        return base  # every layer on the GPU(s): where it runs ranks with one GPU, and stays
    return base + layer_rank(fact.n_layer + 1, layers)


def _shedding(
    budgets: Sequence[GpuBudget],
    principals: Sequence[ModelSpec],
    now: Mapping[str, Instance | None],
) -> dict[str, int]:
    """Above evict_above_c a GPU sheds its lowest-priority running model, one per plan (the
    next plan, on the next observation, sheds another if it is still too hot): model -> GPU."""
    out: dict[str, int] = {}
    for g, b in enumerate(budgets):
        if not b.sheds:
            continue
        for m in reversed(principals):
            inst = now[m.name]
            if inst is not None and inst.adopted and b.label in inst.gpus:
                out.setdefault(m.name, g)
                break
    return out
