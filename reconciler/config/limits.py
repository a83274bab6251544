"""How large a desired file may be: what a real machine needs, with room to spare.

The limits are checked on the plain data before anything is validated or planned, so that a
file of 3,000 models or 90,000 GPU indices is refused at once, with the limit in the message,
rather than after minutes of work.
"""

from __future__ import annotations

from typing import Any

from reconciler.config.source import Loc

__all__ = [
    "MAX_DESIRED_VALUES",
    "MAX_GPUS",
    "MAX_LIST",
    "MAX_MODELS",
    "desired_limits",
]

#: Models in one desired file (a host with 8 GPUs runs a few dozen at most).
MAX_MODELS = 128
#: GPUs in `gpus` and in a model's `pin` (NVML numbers at most 64 on one host).
MAX_GPUS = 64
#: Entries of any other list or mapping of a model: fallbacks, argv, extra_args, env.
MAX_LIST = 256
#: Values (keys, scalars, lists and mappings) in a desired file or profile, anchors expanded.
MAX_DESIRED_VALUES = 10_000

_MODEL_LISTS = {
    "pin": (MAX_GPUS, "GPUs"),
    "fallbacks": (MAX_LIST, "fallbacks"),
    "argv": (MAX_LIST, "arguments"),
    "extra_args": (MAX_LIST, "arguments"),
    "env": (MAX_LIST, "variables"),
}


def _over(loc: Loc, items: Any, limit: int, what: str) -> list[tuple[Loc, str]]:
    if isinstance(items, list | dict) and len(items) > limit:
        return [(loc, f"at most {limit} {what}; this file has {len(items)}")]
    return []


def desired_limits(data: Any) -> list[tuple[Loc, str]]:
    """Lists of a desired file's data that are longer than any real file needs."""
    if not isinstance(data, dict):
        return []
    problems = _over(("gpus",), data.get("gpus"), MAX_GPUS, "GPUs")
    models = data.get("models")
    problems += _over(("models",), models, MAX_MODELS, "models")
    if not isinstance(models, list) or problems:
        return problems
    for i, model in enumerate(models):
        if isinstance(model, dict):
            for key, (limit, what) in _MODEL_LISTS.items():
                problems += _over(("models", i, key), model.get(key), limit, what)
    return problems
