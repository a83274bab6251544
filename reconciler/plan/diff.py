"""The diff: from a placement and what runs to the actions, each with its reason.

Every start, restart, move and keep carries the resolved launch; every action on a running
instance names it (pid, start time, unit, how we know it is ours). An instance only its label
says is ours is never stopped or restarted: it is `unmanaged`, counted where it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconciler.config.desired import Desired, ModelSpec
from reconciler.estimate.facts import ModelFacts
from reconciler.launch import Launch
from reconciler.plan.budget import GpuBudget
from reconciler.plan.model import Action, InstanceRef
from reconciler.plan.options import AS_IS_RANK, VARIANT_RANK, Option
from reconciler.plan.placement import Placement
from reconciler.plan.reasons import Scene, blocked, displaced, own_mib
from reconciler.plan.resolve import launch_for, layers_of
from reconciler.plan.search import Item
from reconciler.state import Instance

__all__ = ["actions", "instance_ref"]

UNMANAGED = (
    "carries our label but is not in the journal: counted as ours, never signalled; "
    "stop it by hand, or let a later `reconcile adopt` take it over"
)


def instance_ref(inst: Instance) -> InstanceRef:
    return InstanceRef(
        model=inst.model,
        pid=inst.pid,
        start_time=inst.start_time,
        unit=inst.unit,
        known_by=inst.source,
        gpus=inst.gpus,
        launch_hash=inst.launch.hash if inst.launch is not None else None,
    )


def _where(budgets: Sequence[GpuBudget], o: Option) -> str:
    if not o.gpus:
        return "the CPU"
    names = " + ".join(f"GPU {budgets[g].label}" for g in o.gpus)
    return names if o.gpu_layers in ("all", None) else f"{names} ({o.gpu_layers} layers)"


def _estimate(budgets: Sequence[GpuBudget], o: Option) -> dict[str, int]:
    out = {budgets[g].label: mib - o.margin_mib for g, mib in zip(o.gpus, o.mib, strict=True)}
    return {**out, "host": o.host_mib}


def actions(
    desired: Desired, p: Placement, facts: Mapping[str, ModelFacts], problems: Mapping[str, str]
) -> list[Action]:
    scene = Scene(
        budgets=p.budgets,
        facts=facts,
        problems=problems,
        items=p.items,
        chosen=p.solution.chosen,
        max_per_gpu=desired.policy.max_models_per_gpu,
        exact=p.solution.exact,
        fresh=p.fresh,
        priorities={m.name: m.priority for m in p.principals},
        unmanaged=frozenset(
            name for name, inst in p.now.items() if inst is not None and not inst.adopted
        ),
        host_mib=p.host_mib,
    )
    after = _room_after(p)
    out = [_action(desired, p, scene, m, after.get(m.name)) for m in p.principals]
    for inst, principal in p.extras:
        kept = p.now[principal]
        assert kept is not None  # an extra exists only beside the kept instance
        why = (
            f"a second instance of {principal}: {kept.model} (pid {kept.pid}) serves it; "
            "one instance per model"
        )
        out.append(_stop_or_leave(inst, why))
    for inst in p.strays:
        out.append(_stop_or_leave(inst, "no longer desired (not in the desired file)"))
    return out


def _stop_or_leave(inst: Instance, why: str) -> Action:
    if not inst.adopted:
        return Action(
            model=inst.model,
            action="unmanaged",
            gpus=inst.gpus,
            instance=instance_ref(inst),
            reason=f"{why}; {UNMANAGED}",
        )
    return Action(
        model=inst.model,
        action="stop",
        variant=inst.model,
        gpus=inst.gpus,
        instance=instance_ref(inst),
        reason=why,
    )


def _launch(
    desired: Desired, p: Placement, m: ModelSpec, o: Option, facts: Mapping[str, ModelFacts]
) -> Launch:
    if o.launch is not None:  # kept as it was started
        return o.launch
    spec = desired.model_named(o.variant) or m
    return launch_for(m, spec, o, facts.get(o.variant), p.budgets)


def _room_after(p: Placement) -> dict[str, tuple[dict[int, int], int]]:
    """For each model the plan starts (or restarts, or moves): the MiB left on each of its
    GPUs and on the host once it has started, in the order apply starts them: what stays is
    held throughout (stops come first), the starts take their room in the plan's order."""
    chosen = p.solution.chosen
    left = [b.budget_mib for b in p.budgets]
    host = p.host_mib
    for o in chosen.values():
        if o.here:
            for g, n in zip(o.gpus, own_mib(o), strict=True):
                left[g] -= n
            host -= o.host_mib
    out = {}
    for m in p.principals:
        start = chosen.get(m.name)
        if start is None or start.here:
            continue
        for g, n in zip(start.gpus, own_mib(start), strict=True):
            left[g] -= n
        host -= start.host_mib
        out[m.name] = ({g: left[g] for g in start.gpus}, host)
    return out


def _action(
    desired: Desired,
    p: Placement,
    scene: Scene,
    m: ModelSpec,
    after: tuple[dict[int, int], int] | None,
) -> Action:
    budgets, item = p.budgets, p.items[m.name]
    chosen = p.solution.chosen.get(m.name)
    now = p.now[m.name]
    ref = instance_ref(now) if now is not None else None
    if now is not None and not now.adopted:
        return Action(
            model=m.name,
            action="unmanaged",
            variant=now.model,
            gpus=now.gpus,
            instance=ref,
            reason=f"{now.model} (pid {now.pid}) serves it and {UNMANAGED}",
        )
    shed = p.shed.get(m.name)
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
        return Action(
            model=m.name,
            action="stop",
            variant=now.model,
            gpus=now.gpus,
            instance=ref,
            reason=reason,
        )
    launch = _launch(desired, p, m, chosen, scene.facts)
    base = {
        "model": m.name,
        "variant": chosen.variant,
        "gpus": launch.gpus,
        "gpu_uuids": launch.gpu_uuids,
        "tensor_split": launch.tensor_split,
        "gpu_layers": layers_of(chosen, scene.facts.get(chosen.variant)) or chosen.gpu_layers,
        "estimate_mib": _estimate(budgets, chosen),
        "launch": launch,
        "instance": ref,
    }
    if now is None:
        assert after is not None  # every start takes its room
        size = _size(scene, chosen, after, p.host_mib)
        if chosen.variant != m.name:
            size = f"runs {chosen.variant}: {_why_not(scene, m)}; {chosen.variant}: {size}"
        return Action(action="start", reason=size, **base)
    because = f" ({cause})" if cause else ""
    if chosen.here:
        reason = _keep_reason(desired, p, scene, m, chosen)
        return Action(action="keep", reason=reason, **base)
    if now.model != chosen.variant:
        reason = f"runs {chosen.variant} instead of {now.model}{because}"
        if chosen.variant != m.name:
            reason += f"; {_why_not(scene, m)}"
        return Action(action="restart", reason=reason, **base)
    changes = tuple(launch.differences(now.launch)) if now.launch is not None else ()
    here = next((o for o in item.options if o.here), None)
    moved = here is None or here.gpus != chosen.gpus
    if moved:
        was = ", ".join(f"GPU {g}" for g in now.gpus) or "the CPU"
        reason = f"from {was} to {_where(budgets, chosen)}{because}"
        if changes:
            reason += "; also " + "; ".join(changes)
        return Action(action="move", reason=reason, changed=changes, **base)
    return Action(
        action="restart", reason=_restart_reason(changes, because), changed=changes, **base
    )


def _restart_reason(changes: tuple[str, ...], because: str) -> str:
    """A restart because the file changed, or because the room changed (`gpu_layers: auto`
    grows or shrinks with it; the split follows the GPUs' room)."""
    if not changes:
        return "launch settings changed" + because
    if all(c.startswith(("gpu_layers ", "tensor_split ")) for c in changes):
        layers = [c.removeprefix("gpu_layers ") for c in changes if c.startswith("gpu_layers ")]
        what = f"layers on the GPU {layers[0]}" if layers else "; ".join(changes)
        return f"the room changed: {what}" + (because or " (the room is back)")
    return "spec changed: " + "; ".join(changes) + because


def _size(scene: Scene, o: Option, after: tuple[dict[int, int], int], host_budget: int) -> str:
    """A start's own estimate and what is left where it goes once it has started:
    `5021 MiB (GPU 0: 17407 of 22428 MiB left)`."""
    budgets = scene.budgets
    left, host = after
    if not o.gpus:
        room = f"host: {host} of {host_budget} MiB left"
        return f"runs on the CPU: {o.host_mib} MiB of host memory ({room})"
    size = " + ".join(str(n) for n in own_mib(o)) + " MiB"
    rooms = [
        f"GPU {budgets[g].label}: {left[g]} of {budgets[g].budget_mib} MiB left" for g in o.gpus
    ]
    if o.gpu_layers not in ("all", None):
        facts = scene.facts.get(o.variant)
        of = f" of {facts.n_layer + 1}" if facts is not None else ""
        size += f" with {o.gpu_layers}{of} layers, {o.host_mib} MiB on the host"
        rooms.append(f"host: {host} of {host_budget} MiB left")
    return f"{size} ({'; '.join(rooms)})"


def _why_not(scene: Scene, m: ModelSpec) -> str:
    """Why a model runs as one of its fallbacks: why its own entry does not fit."""
    item = scene.items[m.name]
    own = tuple(o for o in item.options if o.variant == m.name)
    why = blocked(scene, m, Item(m.name, own, running=item.running), hinted=False)
    return f"{m.name} {why}" if why.startswith(("needs", "cannot")) else f"{m.name}: {why}"


def _keep_reason(desired: Desired, p: Placement, scene: Scene, m: ModelSpec, o: Option) -> str:
    where = f"already on {_where(scene.budgets, o)}"
    if p.items[m.name].fixed:
        return f"{where} (foreign_processes is ignore)"
    if o.rank % VARIANT_RANK != AS_IS_RANK or o.launch is None:
        if o.variant != m.name:
            return f"{where} as {o.variant}: {_why_not(scene, m)}"
        return f"{where} (fits)"
    fresh = [f for f in scene.fresh.get(m.name, ()) if f.variant == o.variant]
    if not fresh:
        return f"{where}; its desired settings cannot be sized now: kept as it runs"
    spec = desired.model_named(o.variant) or m
    wanted = launch_for(m, spec, fresh[0], scene.facts.get(o.variant), p.budgets)
    changes = "; ".join(wanted.differences(o.launch)) or "other launch settings"
    why = blocked(scene, spec, Item(m.name, tuple(fresh)))
    return f"{where}; the file now asks for {changes}, which does not fit ({why}): kept as it runs"
