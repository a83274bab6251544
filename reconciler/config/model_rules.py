"""Rules that relate several fields of one model of a desired file.

Each check says which fields it reads: a model whose `backend` is wrong is still checked for
everything that does not depend on its backend, so that one pass reports every problem (a
broken field is reported by the field's own type, and the checks that read it wait for it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from reconciler.backends import Managed, Refused, flag_uses, positive_int
from reconciler.config.desired import ModelSpec
from reconciler.config.scalars import escaped
from reconciler.config.source import Loc
from reconciler.config.types import show

__all__ = ["Problem", "model_problems", "repeats"]

Problem: TypeAlias = tuple[Loc, str]
Check: TypeAlias = Callable[[Loc, ModelSpec], Iterator[Problem]]

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


def _source(loc: Loc, m: ModelSpec) -> Iterator[Problem]:
    source = SOURCE_KEY[m.backend]
    if getattr(m, source) is None:
        yield loc, f"backend {m.backend} needs `{source}`: {SOURCE_WHAT[source]}"
    for other in sorted(set(SOURCE_KEY.values()) - {source}):
        if other in m.model_fields_set and getattr(m, other) is not None:
            yield (*loc, other), f"backend {m.backend} takes `{source}`, not `{other}`"


def _argv(loc: Loc, m: ModelSpec) -> Iterator[Problem]:
    if m.argv is not None and not m.argv:
        yield (*loc, "argv"), "must not be empty"


def _memory(loc: Loc, m: ModelSpec) -> Iterator[Problem]:
    if m.backend != "llama.cpp" and m.vram_mib is None:
        yield (
            loc,
            f"backend {m.backend} needs `vram_mib`: its memory cannot be estimated from a "
            "GGUF file",
        )


def _llama_only(loc: Loc, m: ModelSpec) -> Iterator[Problem]:
    if m.backend != "llama.cpp":
        for key in LLAMA_ONLY:
            if key in m.model_fields_set:
                yield (*loc, key), f"applies only to backend llama.cpp, not {m.backend}"


def _port(loc: Loc, m: ModelSpec) -> Iterator[Problem]:
    if m.backend in SERVERS and m.port is None:
        yield loc, f"backend {m.backend} needs `port`: the port its server listens on"


def _v_cache(loc: Loc, m: ModelSpec) -> Iterator[Problem]:
    if m.backend == "llama.cpp" and m.cache_type != "f16" and m.flash_attn == "off":
        yield (
            (*loc, "cache_type"),
            (
                f"{m.cache_type} quantizes the V cache, which llama.cpp allows only with flash "
                "attention; set flash_attn: on (or auto), or cache_type: f16"
            ),
        )


def _health_url(loc: Loc, m: ModelSpec) -> Iterator[Problem]:
    if m.health_url is None:
        return
    if m.backend != "command":
        yield (
            (*loc, "health_url"),
            f"applies only to backend command; {m.backend} is checked by the reconciler",
        )
    elif not _is_http_url(m.health_url):
        yield (
            (*loc, "health_url"),
            f"must be an http:// or https:// URL with a host, got {show(m.health_url)}",
        )


def _self_fallback(loc: Loc, m: ModelSpec) -> Iterator[Problem]:
    for j, name in enumerate(m.fallbacks):
        if name == m.name:
            yield (*loc, "fallbacks", j), "a model cannot fall back to itself"


def _pin(loc: Loc, m: ModelSpec) -> Iterator[Problem]:
    if m.pin is not None:
        yield from repeats((*loc, "pin"), list(m.pin))


def _flags(loc: Loc, m: ModelSpec) -> Iterator[Problem]:
    yield from _flag_problems((*loc, "extra_args"), m)


def _env(loc: Loc, m: ModelSpec) -> Iterator[Problem]:
    yield from _env_problems((*loc, "env"), m)


# Each check and the fields it reads (besides `name`, which every valid-enough model has).
_SOURCES = ("backend", "gguf", "model", "argv")
CHECKS: tuple[tuple[tuple[str, ...], Check], ...] = (
    (_SOURCES, _source),
    (("argv",), _argv),
    (("backend", "vram_mib"), _memory),
    (("backend", *LLAMA_ONLY), _llama_only),
    (("backend", "port"), _port),
    (("backend", "cache_type", "flash_attn"), _v_cache),
    (("backend", "extra_args"), _flags),
    (("backend", "env"), _env),
    (("backend", "health_url"), _health_url),
    (("fallbacks",), _self_fallback),
    (("pin",), _pin),
)


def model_problems(loc: Loc, m: ModelSpec, broken: frozenset[str]) -> Iterator[Problem]:
    """Every check of one model whose fields are all valid (`broken`: the keys that are not,
    left out of `m`, which holds their defaults)."""
    for fields, check in CHECKS:
        if broken.isdisjoint(fields):
            yield from check(loc, m)


def repeats(loc: Loc, items: list[Any]) -> Iterator[Problem]:
    """`GPU 1 is listed twice` for each repeated GPU reference (numbers and UUIDs)."""
    seen: set[tuple[type, Any]] = set()
    for j, item in enumerate(items):
        if not isinstance(item, int | str) or isinstance(item, bool):
            continue
        if (type(item), item) in seen:
            yield (*loc, j), f"GPU {escaped(str(item))} is listed twice"
        seen.add((type(item), item))


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
            yield (*loc, use.value_index), f"{flag} takes a positive integer, got {show(use.value)}"


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
