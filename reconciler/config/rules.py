"""Rules that relate several models of a desired file, or a file and the hardware.

They run on whatever parts of the file are valid on their own, so that a type error in one
model does not hide a duplicate name in another: a model with broken fields is checked with
those fields left out (`_partial`), and each rule skips what depends on a broken field.
Rules within one model live in `model_rules.py`. Each rule yields `(loc, message)`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from reconciler.config.desired import ModelSpec, Thermal
from reconciler.config.model_rules import Problem, model_problems, repeats
from reconciler.config.scalars import escaped
from reconciler.config.source import Loc, suggest

__all__ = ["Problem", "desired_problems", "hardware_problems"]

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class _Model:
    index: int
    spec: ModelSpec  # with the broken fields left out (their defaults instead)
    broken: frozenset[str]  # keys whose values are not valid


def _valid(cls: type[T], raw: Any, context: Mapping[str, Any]) -> T | None:
    try:
        return cls.model_validate(raw, context=dict(context))
    except ValidationError:
        return None


def _partial(index: int, raw: Any, context: Mapping[str, Any]) -> _Model | None:
    """Model `index` as far as it is valid: None when even its name is not."""
    try:
        return _Model(index, ModelSpec.model_validate(raw, context=dict(context)), frozenset())
    except ValidationError as exc:
        broken = frozenset(str(e["loc"][0]) for e in exc.errors() if e["loc"])
    if not isinstance(raw, dict) or not broken or "name" in broken:
        return None
    spec = _valid(ModelSpec, {k: v for k, v in raw.items() if k not in broken}, context)
    return None if spec is None else _Model(index, spec, broken)


def _models(data: dict[str, Any], context: Mapping[str, Any]) -> list[_Model]:
    raw = data.get("models")
    if not isinstance(raw, list):
        return []
    return [m for i, item in enumerate(raw) if (m := _partial(i, item, context)) is not None]


def desired_problems(data: Any, context: Mapping[str, Any]) -> list[Problem]:
    """Every cross-field problem in the valid parts of a desired file's data."""
    if not isinstance(data, dict):
        return []
    problems: list[Problem] = []
    policy = data.get("policy")
    raw = policy.get("thermal") if isinstance(policy, dict) else None
    thermal = _valid(Thermal, raw, context) if isinstance(raw, dict) else None
    if thermal is not None and thermal.shed_above_c > thermal.evict_above_c:
        problems.append(
            (
                ("policy", "thermal", "shed_above_c"),
                f"must not be above evict_above_c ({thermal.evict_above_c}): "
                "starts stop before evictions begin",
            )
        )
    gpus = data.get("gpus")
    if isinstance(gpus, list):
        problems += repeats(("gpus",), gpus)
    models = _models(data, context)
    for m in models:
        problems += model_problems(("models", m.index), m.spec, m.broken)
        if "pin" not in m.broken:
            problems += _pin_problems(("models", m.index), m.spec, gpus)
    problems += _name_problems(models)
    problems += _port_problems(models)
    problems += _fallback_problems(models)
    return problems


def _pin_problems(loc: Loc, m: ModelSpec, gpus: Any) -> Iterator[Problem]:
    if m.pin is None or not isinstance(gpus, list):
        return
    for j, ref in enumerate(m.pin):
        same_kind = [g for g in gpus if type(g) is type(ref)]
        if same_kind and ref not in same_kind:
            named = [g for g in gpus if isinstance(g, int | str) and not isinstance(g, bool)]
            allowed = ", ".join(escaped(str(g), 20) for g in named)
            yield (
                (*loc, "pin", j),
                (f"GPU {ref} is not in `gpus` ({allowed}); add it there or pin to one of those"),
            )


def _name_problems(models: list[_Model]) -> Iterator[Problem]:
    first: dict[str, int] = {}
    for m in models:
        name = m.spec.name
        if name in first:
            yield (
                ("models", m.index, "name"),
                (f'the name "{name}" is already used by models[{first[name]}]'),
            )
        else:
            first[name] = m.index


def _families(models: list[_Model]) -> dict[str, int]:
    """Each model's family: models joined by fallbacks (which run in place of each other)
    share one number; a union-find, linear in the number of fallbacks."""
    parent: dict[str, str] = {m.spec.name: m.spec.name for m in models}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for m in models:
        for name in m.spec.fallbacks:
            if name in parent:
                parent[root(name)] = root(m.spec.name)
    roots: dict[str, int] = {}
    return {name: roots.setdefault(root(name), len(roots)) for name in parent}


def _port_problems(models: list[_Model]) -> Iterator[Problem]:
    # A model and its fallbacks run in place of each other, so they may share a port.
    family = _families(models)
    owners: dict[int, _Model] = {}
    for m in models:
        if m.spec.port is None or "fallbacks" in m.broken:
            continue
        other = owners.get(m.spec.port)
        if other is None:
            owners[m.spec.port] = m
        elif family[m.spec.name] != family[other.spec.name]:
            yield (
                ("models", m.index, "port"),
                (
                    f'port {m.spec.port} is already used by "{other.spec.name}" '
                    f"(models[{other.index}]); give each model its own port"
                ),
            )


def _fallback_problems(models: list[_Model]) -> Iterator[Problem]:
    by_name = {m.spec.name: m for m in models}
    owner: dict[str, _Model] = {}  # variant -> the first model that names it
    for m in models:
        for j, name in enumerate(m.spec.fallbacks):
            if name not in by_name:
                yield (
                    ("models", m.index, "fallbacks", j),
                    (f'no model named "{name}"' + suggest(name, by_name)),
                )
            elif name in owner and owner[name].spec.name != m.spec.name:
                first = owner[name]
                yield (
                    ("models", m.index, "fallbacks", j),
                    (
                        f'"{name}" is already the fallback of "{first.spec.name}" '
                        f"(models[{first.index}]); a variant runs in place of one model only: "
                        "give each model its own variant entry"
                    ),
                )
            elif name != m.spec.name:
                owner.setdefault(name, m)
    for cycle in _cycles(models, by_name):
        first = min((by_name[name] for name in cycle), key=lambda m: m.index)
        at = cycle.index(first.spec.name)
        names = cycle[at:] + cycle[:at]
        yield (
            ("models", first.index, "fallbacks"),
            "fallbacks form a cycle: " + " -> ".join([*names, names[0]]),
        )


def _cycles(models: list[_Model], by_name: Mapping[str, _Model]) -> Iterator[list[str]]:
    """Fallback cycles (not self-loops), each once: a depth-first walk in file order that
    visits every model and every fallback once (linear, however the entries share variants)."""
    done: set[str] = set()
    for start in models:
        if start.spec.name in done:
            continue
        path: list[str] = [start.spec.name]
        on_path = {start.spec.name: 0}
        todo: list[Iterator[str]] = [iter(start.spec.fallbacks)]
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                todo.pop()
                name = path.pop()
                del on_path[name]
                done.add(name)
                continue
            if nxt not in by_name or nxt in done or nxt == path[-1]:
                continue
            if nxt in on_path:
                yield path[on_path[nxt] :]
                continue
            on_path[nxt] = len(path)
            path.append(nxt)
            todo.append(iter(by_name[nxt].spec.fallbacks))


def hardware_problems(
    data: Any, context: Mapping[str, Any], gpu_count: int, uuids: Sequence[str | None], where: str
) -> list[Problem]:
    """GPUs named by `gpus` and `pin` that the machine (or profile `where`) does not have."""
    if not isinstance(data, dict):
        return []
    refs: list[tuple[Loc, Any]] = []
    if isinstance(data.get("gpus"), list):
        refs += [(("gpus", j), ref) for j, ref in enumerate(data["gpus"])]
    for m in _models(data, context):
        if m.spec.pin is not None and "pin" not in m.broken:
            refs += [(("models", m.index, "pin", j), ref) for j, ref in enumerate(m.spec.pin)]
    have = f"GPUs 0-{gpu_count - 1}" if gpu_count > 1 else ("GPU 0" if gpu_count else "no GPU")
    problems: list[Problem] = []
    for loc, ref in refs:
        if isinstance(ref, int) and not isinstance(ref, bool) and ref >= gpu_count:
            problems.append((loc, f"no GPU {ref} on {where}, which has {have}"))
        elif isinstance(ref, str) and ref not in uuids:
            problems.append((loc, f"no GPU with UUID {escaped(ref)} on {where}"))
    return problems
