"""Field types of the configuration files, each with a message a person can act on.

Pydantic's own messages ("Input should be a valid integer, unable to parse string as an
integer") are precise but not helpful in a YAML file; these validators say what the key
must be and what they got, e.g. ``must be a positive integer, got "8k"``.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import re
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

__all__ = [
    "CacheType",
    "Celsius",
    "EnvName",
    "Fraction",
    "GpuLayers",
    "GpuRef",
    "Hostname",
    "Mebibytes",
    "ModelName",
    "NonEmptyStr",
    "NonNegativeInt",
    "Port",
    "PositiveInt",
    "format_version",
    "invalid",
    "nearest",
    "not_a_number",
    "one_of",
    "show",
]


def show(value: Any) -> str:
    """How a value appears in a message: as the user would write it in YAML, briefly."""
    if isinstance(value, str):
        text = json.dumps(value)
        return text if len(text) <= 60 else text[:56] + '..."'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def invalid(expected: str, value: Any, hint: str = "") -> PydanticCustomError:
    """The error for a value that is not what the key expects; `hint`: what to try."""
    return PydanticCustomError(
        "value",
        "{expected}, got {got}{hint}",
        {"expected": expected, "got": show(value), "hint": hint},
    )


_NUMBER = re.compile(r"^\s*[-+]?([0-9][0-9_]*(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$")


def not_a_number(expected: str, value: Any) -> PydanticCustomError:
    """The error for a value where a number belongs: a quoted number is told to lose its
    quotes (`port: "8081"` is a string in YAML)."""
    quoted = isinstance(value, str) and _NUMBER.match(value) is not None
    return invalid(expected, value, "; write the number without quotes" if quoted else "")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_between(expected: str, low: int, high: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if not _is_int(value) or value < low or (high is not None and value > high):
            raise not_a_number(expected, value)
        return int(value)

    return check


PositiveInt: TypeAlias = Annotated[
    int, Field(ge=1), BeforeValidator(_int_between("must be a positive integer", 1))
]
NonNegativeInt: TypeAlias = Annotated[
    int, Field(ge=0), BeforeValidator(_int_between("must be an integer >= 0", 0))
]
Mebibytes: TypeAlias = Annotated[
    int, Field(ge=0), BeforeValidator(_int_between("must be a whole number of MiB >= 0", 0))
]
Port: TypeAlias = Annotated[
    int,
    BeforeValidator(_int_between("must be a TCP port between 1 and 65535", 1, 65535)),
    Field(ge=1, le=65535),
]
Celsius: TypeAlias = Annotated[
    int,
    BeforeValidator(_int_between("must be a temperature in degrees Celsius (1 to 150)", 1, 150)),
    Field(ge=1, le=150),
]


def _fraction(value: Any) -> float:
    # Compared as it is: an int of any size compares with 0 and 1 without becoming a float.
    ok = _is_int(value) or (isinstance(value, float) and not math.isnan(value))
    if not ok or not 0 <= value < 1:
        raise not_a_number("must be a fraction from 0 to below 1 (0.10 is 10 %)", value)
    return float(value)


Fraction: TypeAlias = Annotated[float, Field(ge=0, lt=1), BeforeValidator(_fraction)]


def one_of(literal: Any, booleans: tuple[str, str] | None = None) -> BeforeValidator:
    """A validator: the value must be one of the strings of `literal` (a `Literal[...]`);
    `booleans` maps YAML true/false to two of them."""
    allowed = typing.get_args(literal)

    def check(value: Any) -> str:
        if booleans is not None and isinstance(value, bool):
            return booleans[0] if value else booleans[1]
        if isinstance(value, str) and value in allowed:
            return value
        raise invalid("must be one of " + ", ".join(allowed), value, nearest(value, allowed))

    return BeforeValidator(check)


def _folded(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def nearest(value: Any, allowed: tuple[str, ...]) -> str:
    """`; did you mean "q8_0"?` for a value close to one of `allowed` (another case, a
    missing dot or dash, a typo), else ""."""
    if not isinstance(value, str) or not value.strip():
        return ""
    same = [a for a in allowed if _folded(a) == _folded(value)]
    close = same or difflib.get_close_matches(value.lower(), allowed, n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


CacheType: TypeAlias = Literal["f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl"]

_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")


def _model_name(value: Any) -> str:
    if isinstance(value, str) and _NAME.match(value):
        return value
    hint = ""
    if isinstance(value, str):
        fixed = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")[:48].strip("-")
        hint = f'; did you mean "{fixed}"?' if fixed and _NAME.match(fixed) else ""
    raise invalid(
        "must be 1 to 48 lowercase letters, digits and dashes, not starting or ending with a dash "
        "(it becomes part of unit names)",
        value,
        hint,
    )


ModelName: TypeAlias = Annotated[str, Field(pattern=_NAME.pattern), BeforeValidator(_model_name)]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env_name(value: Any) -> str:
    if isinstance(value, str) and _ENV_NAME.match(value):
        return value
    raise invalid("must be an environment variable name (letters, digits, _)", value)


EnvName: TypeAlias = Annotated[str, Field(pattern=_ENV_NAME.pattern), BeforeValidator(_env_name)]


def _non_empty_str(value: Any) -> str:
    # Numbers are accepted and written as the user wrote them: `extra_args: [--threads, 8]`.
    if _is_int(value) or (isinstance(value, float) and math.isfinite(value)):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    raise invalid("must be a non-empty string", value)


NonEmptyStr: TypeAlias = Annotated[str, Field(min_length=1), BeforeValidator(_non_empty_str)]

_GPU_UUID = re.compile(r"^(GPU|MIG)-[0-9A-Za-z-]+$")


def _gpu_ref(value: Any) -> int | str:
    if _is_int(value) and value >= 0:
        return int(value)
    if isinstance(value, str) and _GPU_UUID.match(value):
        return value
    raise not_a_number('must be a GPU index (0, 1, ...) or a UUID ("GPU-...")', value)


GpuRef: TypeAlias = Annotated[int | str, BeforeValidator(_gpu_ref)]


def _gpu_layers(value: Any) -> int | str:
    if value in ("all", "auto") and isinstance(value, str):
        return str(value)
    if _is_int(value) and value >= 0:
        return int(value)
    raise not_a_number('must be "all", "auto" or a number of layers >= 0', value)


GpuLayers: TypeAlias = Annotated[Literal["all", "auto"] | int, BeforeValidator(_gpu_layers)]

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def _hostname(value: Any) -> str:
    if isinstance(value, str):
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            if _HOSTNAME.match(value):
                return value
    raise invalid("must be an IP address or a host name", value)


Hostname: TypeAlias = Annotated[str, BeforeValidator(_hostname)]


def format_version(*supported: int) -> BeforeValidator:
    """A validator: the format version of a file must be one of `supported`."""

    def check(value: Any) -> int:
        if _is_int(value) and value in supported:
            return int(value)
        readable = ", ".join(str(v) for v in supported)
        quoted = isinstance(value, str) and _NUMBER.match(value) is not None
        raise PydanticCustomError(
            "value",
            "unsupported format version {got}; this reconciler reads version {readable}{hint}",
            {
                "got": show(value),
                "readable": readable,
                "hint": "; write the number without quotes" if quoted else "",
            },
        )

    return BeforeValidator(check)
