"""`reconcile check`: validate a desired file (and its fit on hardware profiles)."""

from __future__ import annotations

import argparse
from typing import TextIO

from reconciler.errors import ConfigErrors
from reconciler.spec.desired import ModelSpec
from reconciler.spec.loader import check_hardware, load_desired, load_profile
from reconciler.spec.profile import Profile

__all__ = ["check", "describe_model", "describe_profile"]


def describe_model(m: ModelSpec) -> list[str]:
    """The columns of one model's summary line."""
    if m.backend == "llama.cpp":
        slots = f"ctx {m.ctx}" + (f" x{m.parallel}" if m.parallel > 1 else "")
        size = f"{slots} {m.cache_type}"
        source = str(m.gguf) + ("" if m.gguf is not None and m.gguf.exists() else " (file absent)")
    else:
        size = f"{m.vram_mib} MiB"
        source = " ".join(m.argv) if m.argv is not None else (m.model or "")
    where = "pin " + ",".join(str(g) for g in m.pin) if m.pin else f"split {m.split}"
    flags = [f"port {m.port}" if m.port else "no port"]
    if m.required:
        flags.append("required")
    if m.fallbacks:
        flags.append("fallbacks " + ",".join(m.fallbacks))
    return [m.name, m.backend, f"priority {m.priority}", size, where, "  ".join(flags), source]


def describe_profile(name: str, p: Profile) -> str:
    gpus = "; ".join(
        f"GPU {i} {g.name} {g.memory_mib} MiB (baseline {g.baseline_mib} MiB)"
        for i, g in enumerate(p.gpus)
    )
    count = f"{len(p.gpus)} GPU" + ("s" if len(p.gpus) != 1 else "")
    return (
        f"profile {name}: {p.description}; {count}: {gpus or 'none'}; host {p.host.ram_mib} MiB RAM"
    )


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))] if rows else []
    return [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in rows
    ]


def check(args: argparse.Namespace, out: TextIO) -> int:
    desired = load_desired(args.file)
    profiles = [load_profile(p) for p in args.profile or []]
    errors = [e for p in profiles for e in check_hardware(desired, p)]
    if errors:
        raise ConfigErrors(errors)
    spec = desired.spec
    count = len(spec.models)
    out.write(f"{args.file}: valid, {count} model{'s' if count != 1 else ''}\n")
    for line in _table([describe_model(m) for m in spec.models]):
        out.write(line + "\n")
    for p in profiles:
        out.write(describe_profile(p.name, p.spec) + "\n")
    return 0
