"""Rules that relate several fields or several models of a desired file.

They run on whatever parts of the file are valid on their own, so that a type error in one
model does not hide a duplicate name in another. Each rule yields `(loc, message, at_key)`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from reconciler.backends import Managed, Refused, flag_uses, positive_int
from reconciler.config.desired import ModelSpec, Policy
from reconciler.config.source import Loc, suggest

__all__ = ["Problem", "desired_problems", "hardware_problems"]

Problem: TypeAlias = tuple[Loc, str]
T = TypeVar("T", bound=BaseModel)

LLAMA_ONLY = ("cache_type", "flash_attn", "gpu_layers")
SOURCE_KEY = {"llama.cpp": "gguf", "vllm": "model", "ollama": "model", "command": "argv"}
SOURCE_WHAT = {
    "gguf": "the path of the GGUF model file",
    "model": "the model id or path",
    "argv": "the command line to run, as a list",
}
SERVERS = ("llama.cpp", "vllm")
# Environment variables the reconciler sets in every instance, and what from.
RESERVED_ENV = {
    "RECONCILER_INSTANCE": "our label, which says the process is ours",
    "CUDA_VISIBLE_DEVICES": "the GPUs the plan places the model on",
    "CUDA_DEVICE_ORDER": "the placement, so that CUDA numbers GPUs as NVML does",
}
OLLAMA_ENV = {
    "OLLAMA_HOST": "`host` and `port`",
    "OLLAMA_KEEP_ALIVE": "the reconciler, which keeps the model loaded",
    "OLLAMA_MAX_LOADED_MODELS": "the reconciler, which runs one model per ollama serve",
}


def _valid(cls: type[T], raw: Any, context: Mapping[str, Any]) -> T | None:
    try:
        return cls.model_validate(raw, context=dict(context))
    except ValidationError:
        return None


def desired_problems(data: Any, context: Mapping[str, Any]) -> list[Problem]:
    """Every cross-field problem in the valid parts of a desired file's data."""
    if not isinstance(data, dict):
        return []
    problems: list[Problem] = []
    policy = _valid(Policy, data.get("policy") or {}, context)
    if policy is not None and policy.thermal.shed_above_c > policy.thermal.evict_above_c:
        problems.append(
            (
                ("policy", "thermal", "shed_above_c"),
                f"must not be above evict_above_c ({policy.thermal.evict_above_c}): "
                "starts stop before evictions begin",
            )
        )
    gpus = data.get("gpus")
    if isinstance(gpus, list):
        problems += _repeats(("gpus",), gpus)
    raw_models = data.get("models")
    if not isinstance(raw_models, list):
        return problems
    models = [(i, _valid(ModelSpec, raw, context)) for i, raw in enumerate(raw_models)]
    valid = [(i, m) for i, m in models if m is not None]
    for i, model in valid:
        problems += _model_problems(("models", i), model)
        problems += _pin_problems(("models", i), model, gpus if isinstance(gpus, list) else None)
    problems += _name_problems(valid)
    problems += _port_problems(valid)
    problems += _fallback_problems(valid)
    return problems


def _model_problems(loc: Loc, m: ModelSpec) -> Iterator[Problem]:
    source = SOURCE_KEY[m.backend]
    if getattr(m, source) is None:
        yield loc, f"backend {m.backend} needs `{source}`: {SOURCE_WHAT[source]}"
    if m.argv is not None and not m.argv:
        yield (*loc, "argv"), "must not be empty"
    for other in sorted(set(SOURCE_KEY.values()) - {source}):
        if other in m.model_fields_set and getattr(m, other) is not None:
            yield (*loc, other), f"backend {m.backend} takes `{source}`, not `{other}`"
    if m.backend != "llama.cpp":
        if m.vram_mib is None:
            yield (
                loc,
                (
                    f"backend {m.backend} needs `vram_mib`: its memory cannot be estimated "
                    "from a GGUF file"
                ),
            )
        for key in LLAMA_ONLY:
            if key in m.model_fields_set:
                yield (*loc, key), f"applies only to backend llama.cpp, not {m.backend}"
    if m.backend in SERVERS and m.port is None:
        yield loc, f"backend {m.backend} needs `port`: the port its server listens on"
    if m.backend == "llama.cpp" and m.cache_type != "f16" and m.flash_attn == "off":
        yield (
            (*loc, "cache_type"),
            (
                f"{m.cache_type} quantizes the V cache, which llama.cpp allows only with flash "
                "attention; set flash_attn: on (or auto), or cache_type: f16"
            ),
        )
    yield from _flag_problems((*loc, "extra_args"), m)
    yield from _env_problems((*loc, "env"), m)
    if m.health_url is not None:
        if m.backend != "command":
            yield (
                (*loc, "health_url"),
                f"applies only to backend command; {m.backend} is checked by the reconciler",
            )
        elif not _is_http_url(m.health_url):
            yield (
                (*loc, "health_url"),
                f'must be an http:// or https:// URL with a host, got "{m.health_url}"',
            )
    for j, name in enumerate(m.fallbacks):
        if name == m.name:
            yield (*loc, "fallbacks", j), "a model cannot fall back to itself"
    if m.pin is not None:
        yield from _repeats((*loc, "pin"), list(m.pin))


def _flag_problems(loc: Loc, m: ModelSpec) -> Iterator[Problem]:
    """Flags in `extra_args` that the reconciler sets, or whose memory it cannot estimate."""
    for use in flag_uses(m.backend, m.extra_args):
        entry, flag = use.entry, use.flag
        if isinstance(entry, Managed):
            if entry.key:
                yield (
                    (*loc, use.index),
                    f"{flag} is set by the reconciler from `{entry.key}`; use that key instead",
                )
            else:
                yield (
                    (*loc, use.index),
                    f"{flag} is set by the reconciler, which sizes and places the model itself; "
                    "remove it",
                )
        elif isinstance(entry, Refused):
            yield (
                (*loc, use.index),
                (
                    f"{flag} changes memory in a way the estimator does not model ({entry.adds}); "
                    "remove it, or run this model with backend: command and vram_mib"
                ),
            )
        elif entry.switch is not None:
            if use.inline:
                yield (*loc, use.index), f"{flag} takes no value; write it alone"
        elif use.value is None:
            yield (
                (*loc, use.index),
                f"{flag} needs a positive integer after it, e.g. [{flag}, 1024]",
            )
        elif positive_int(use.value) is None:
            yield (*loc, use.value_index), f'{flag} takes a positive integer, got "{use.value}"'


def _env_problems(loc: Loc, m: ModelSpec) -> Iterator[Problem]:
    """Variables the reconciler sets itself: a model's own value would undo the placement."""
    reserved = {**RESERVED_ENV, **(OLLAMA_ENV if m.backend == "ollama" else {})}
    for name in m.env:
        if name in reserved:
            yield (*loc, name), f"{name} is set by the reconciler from {reserved[name]}; remove it"


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and text.isprintable()


def _repeats(loc: Loc, items: Sequence[Any]) -> Iterator[Problem]:
    for j, item in enumerate(items):
        if item in items[:j]:
            yield (*loc, j), f"GPU {item} is listed twice"


def _pin_problems(loc: Loc, m: ModelSpec, gpus: list[Any] | None) -> Iterator[Problem]:
    if m.pin is None or gpus is None:
        return
    for j, ref in enumerate(m.pin):
        same_kind = [g for g in gpus if type(g) is type(ref)]
        if same_kind and ref not in same_kind:
            allowed = ", ".join(str(g) for g in gpus)
            yield (
                (*loc, "pin", j),
                (f"GPU {ref} is not in `gpus` ({allowed}); add it there or pin to one of those"),
            )


def _name_problems(valid: list[tuple[int, ModelSpec]]) -> Iterator[Problem]:
    first: dict[str, int] = {}
    for i, m in valid:
        if m.name in first:
            yield (
                ("models", i, "name"),
                (f'the name "{m.name}" is already used by models[{first[m.name]}]'),
            )
        else:
            first[m.name] = i


def _chain(name: str, by_name: Mapping[str, ModelSpec]) -> set[str]:
    """`name` and every model reachable through fallbacks from it."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen or current not in by_name:
            continue
        seen.add(current)
        todo.extend(by_name[current].fallbacks)
    return seen


def _port_problems(valid: list[tuple[int, ModelSpec]]) -> Iterator[Problem]:
    # A model and its fallbacks run in place of each other, so they may share a port.
    by_name = {m.name: m for _i, m in valid}
    owners: dict[int, tuple[int, ModelSpec]] = {}
    for i, m in valid:
        if m.port is None:
            continue
        if m.port in owners:
            j, other = owners[m.port]
            related = m.name in _chain(other.name, by_name) or other.name in _chain(m.name, by_name)
            if not related:
                yield (
                    ("models", i, "port"),
                    (
                        f'port {m.port} is already used by "{other.name}" (models[{j}]); '
                        "give each model its own port"
                    ),
                )
        else:
            owners[m.port] = (i, m)


def _fallback_problems(valid: list[tuple[int, ModelSpec]]) -> Iterator[Problem]:
    by_name = {m.name: m for _i, m in valid}
    reported: set[frozenset[str]] = set()
    owner: dict[str, tuple[int, str]] = {}  # variant -> the first model that names it
    for i, m in valid:
        for j, name in enumerate(m.fallbacks):
            if name not in by_name:
                yield (
                    ("models", i, "fallbacks", j),
                    (f'no model named "{name}"' + suggest(name, by_name)),
                )
            elif name in owner and owner[name][1] != m.name:
                k, first = owner[name]
                yield (
                    ("models", i, "fallbacks", j),
                    (
                        f'"{name}" is already the fallback of "{first}" (models[{k}]); a variant '
                        "runs in place of one model only: give each model its own variant entry"
                    ),
                )
            elif name != m.name:
                owner.setdefault(name, (i, m.name))
        cycle = _cycle_from(m.name, by_name)
        if cycle and frozenset(cycle) not in reported:
            reported.add(frozenset(cycle))
            yield (
                ("models", i, "fallbacks"),
                ("fallbacks form a cycle: " + " -> ".join([*cycle, cycle[0]])),
            )


def _cycle_from(start: str, by_name: Mapping[str, ModelSpec]) -> list[str]:
    """The names on a fallback cycle through `start` (not self-loops), or []."""
    path: list[str] = [start]

    def visit(name: str) -> bool:
        for nxt in by_name[name].fallbacks:
            if nxt == start and len(path) > 1:
                return True
            if nxt in by_name and nxt not in path:
                path.append(nxt)
                if visit(nxt):
                    return True
                path.pop()
        return False

    return path if visit(start) else []


def hardware_problems(
    data: Any, context: Mapping[str, Any], gpu_count: int, uuids: Sequence[str | None], where: str
) -> list[Problem]:
    """GPUs named by `gpus` and `pin` that the machine (or profile `where`) does not have."""
    if not isinstance(data, dict):
        return []
    refs: list[tuple[Loc, Any]] = []
    if isinstance(data.get("gpus"), list):
        refs += [(("gpus", j), ref) for j, ref in enumerate(data["gpus"])]
    for i, raw in enumerate(data.get("models") or []):
        m = _valid(ModelSpec, raw, context)
        if m is not None and m.pin is not None:
            refs += [(("models", i, "pin", j), ref) for j, ref in enumerate(m.pin)]
    have = f"GPUs 0-{gpu_count - 1}" if gpu_count > 1 else ("GPU 0" if gpu_count else "no GPU")
    problems: list[Problem] = []
    for loc, ref in refs:
        if isinstance(ref, int) and ref >= gpu_count:
            problems.append((loc, f"no GPU {ref} on {where}, which has {have}"))
        elif isinstance(ref, str) and ref not in uuids:
            problems.append((loc, f"no GPU with UUID {ref} on {where}"))
    return problems
