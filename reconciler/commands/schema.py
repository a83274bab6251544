"""`reconcile schema`: the JSON Schema of the desired file (or of a hardware profile)."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from pydantic import BaseModel

from reconciler.config.desired import Desired
from reconciler.config.profile import Profile

__all__ = ["schema", "schema_of"]

_TITLES: dict[str, tuple[type[BaseModel], str]] = {
    "desired": (Desired, "Desired state for the GPU reconciler (desired.yaml)"),
    "profile": (Profile, "Hardware profile for the GPU reconciler"),
}


def schema_of(kind: str) -> dict[str, Any]:
    model, title = _TITLES[kind]
    out = model.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **out, "title": title}


def schema(args: argparse.Namespace, out: TextIO) -> int:
    out.write(json.dumps(schema_of(args.kind), indent=2, sort_keys=False) + "\n")
    return 0
