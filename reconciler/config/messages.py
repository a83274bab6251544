"""Pydantic's validation errors as `ConfigError`s located in the file, in our own words."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from reconciler.config.source import Loc, Source, suggest
from reconciler.config.types import show
from reconciler.errors import ConfigError

__all__ = ["translate"]

_EXPECTED = {
    "model_type": "must be a mapping of keys",
    "model_attributes_type": "must be a mapping of keys",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "string_type": "must be a string",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
}


def translate(
    exc: ValidationError, source: Source, root: type[BaseModel], most: int | None = None
) -> list[ConfigError]:
    """Each of pydantic's errors in our words, at its place; with `most`, the first `most`
    of them, then one line saying how many more (placed at the first one not shown)."""
    details = exc.errors(include_url=False)
    out = [_one(err, source, root) for err in details[:most]]
    if most is not None and len(details) > most:
        more = f"... and {len(details) - most} more problems from here on"
        out.append(source.error(tuple(details[most]["loc"]), more))
    return out


def _one(err: ErrorDetails, source: Source, root: type[BaseModel]) -> ConfigError:
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    if loc and loc[-1] == "[key]":  # a bad key of a free mapping such as `env`
        return source.error(loc[:-1], err["msg"], at_key=True)
    if kind == "missing":
        return source.error(loc[:-1], f'missing required key "{loc[-1]}"')
    if kind == "extra_forbidden":
        allowed = _fields_at(root, loc[:-1])
        return source.error(loc, "unknown key" + suggest(str(loc[-1]), allowed), at_key=True)
    if kind == "too_short":
        return source.error(loc, "must not be empty")
    if kind in _EXPECTED:
        return source.error(loc, f"{_EXPECTED[kind]}, got {show(err['input'])}")
    message = err["msg"]
    if kind != "value":
        message = message[:1].lower() + message[1:]
    return source.error(loc, message)


def _fields_at(root: type[BaseModel], loc: Loc) -> list[str]:
    """The keys allowed in the mapping at `loc`, walking the models' annotations."""
    cls: Any = root
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a list: same class
        fields = getattr(cls, "model_fields", {})
        if part not in fields:
            return []
        cls = _model_in(fields[part].annotation)
    return list(getattr(cls, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    """The BaseModel class inside `X`, `X | None`, `tuple[X, ...]` and the like."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, tuple, list, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
