"""`reconcile profiles [NAME|PATH ...] [--json]`: the hardware profiles there are, with their GPUs.

Without arguments: every profile a name finds, `$RECONCILER_PROFILES` folders first (a name
there hides the bundled profile of that name), then the bundled ones. With arguments: those
profiles only, by name or path, which is how a profile file is checked after an edit. A
profile that does not load is reported with every problem (exit 1) after the others are
listed.
"""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from reconciler.errors import ConfigError, ConfigErrors

if TYPE_CHECKING:
    from reconciler.config.loader import ProfileFile

__all__ = ["add_arguments", "profiles_command"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "profiles",
        nargs="*",
        metavar="NAME|PATH",
        help="only these profiles (a name or a path); default: every bundled and user profile",
    )
    p.add_argument("--json", action="store_true", help="a JSON list, for scripts")


@dataclass(frozen=True)
class Listed:
    profile: ProfileFile
    origin: str  # "bundled", "RECONCILER_PROFILES" or "path"
    hides: Path | None = None  # the bundled profile of the same name it hides


def _found() -> list[tuple[str, Path, str]]:
    """(name, file, origin) of every profile a name finds, first folder first."""
    # Imported here: the loader brings pydantic and the YAML reader; `--help` needs neither.
    from reconciler.config.loader import bundled_profiles, profile_dirs  # noqa: PLC0415

    bundled = bundled_profiles()
    out = []
    for folder in profile_dirs():
        origin = "bundled" if folder == bundled else "RECONCILER_PROFILES"
        out += [(p.stem, p, origin) for p in sorted(folder.glob("*.yaml")) if p.is_file()]
    return out


def _listed(refs: list[str]) -> tuple[list[Listed], list[ConfigError]]:
    """The profiles to show, and the problems of those that do not load."""
    wanted: list[tuple[str, str, Path | None]] = []
    if refs:
        names = {name: origin for name, _path, origin in reversed(_found())}
        wanted = [(ref, names.get(ref, "path"), None) for ref in refs]
    else:
        first: dict[str, tuple[Path, str]] = {}
        hidden: dict[str, Path] = {}
        for name, path, origin in _found():
            if name in first:
                hidden.setdefault(name, path)
                continue
            first[name] = (path, origin)
        wanted = [(str(path), origin, hidden.get(name)) for name, (path, origin) in first.items()]
    shown: list[Listed] = []
    broken: list[ConfigError] = []
    for ref, origin, hides in wanted:
        result = _load(ref, origin, hides)
        if isinstance(result, Listed):
            shown.append(result)
        else:
            broken += result
    return shown, broken


def _load(ref: str, origin: str, hides: Path | None) -> Listed | list[ConfigError]:
    from reconciler.config.loader import load_profile  # noqa: PLC0415

    try:
        return Listed(load_profile(ref), origin, hides)
    except ConfigErrors as exc:
        return list(exc.errors)


def _as_json(item: Listed) -> dict[str, Any]:
    spec = item.profile.spec
    return {
        "name": item.profile.name,
        "origin": item.origin,
        "path": str(item.profile.path),
        "hides": None if item.hides is None else str(item.hides),
        "description": spec.description,
        "gpus": [
            {
                "index": i,
                "name": g.name,
                "memory_mib": g.memory_mib,
                "baseline_mib": g.baseline_mib,
                "compute_capability": g.compute_capability,
            }
            for i, g in enumerate(spec.gpus)
        ],
        "host": {"ram_mib": spec.host.ram_mib, "cpus": spec.host.cpus},
    }


def _lines(item: Listed) -> list[str]:
    spec = item.profile.spec
    where = "bundled" if item.origin == "bundled" else str(item.profile.path)
    if item.hides is not None:
        where += f", in place of {item.hides}"
    lines = [f"{item.profile.name}  ({where})  {spec.description}"]
    for i, g in enumerate(spec.gpus):
        held = f"  (baseline {g.baseline_mib} MiB)" if g.baseline else ""
        lines.append(f"    GPU {i}  {g.name}  {g.memory_mib} MiB total{held}")
    if not spec.gpus:
        lines.append("    no NVIDIA GPU")
    return lines


def profiles_command(args: argparse.Namespace, out: TextIO) -> int:
    """List the profiles; those that do not load are raised together, after the others."""
    refs: list[str] = list(args.profiles or [])
    shown, broken = _listed(refs)
    if args.json:
        out.write(json.dumps([_as_json(item) for item in shown], indent=2) + "\n")
    else:
        for item in shown:
            for line in _lines(item):
                out.write(line + "\n")
    if broken:
        rerun = "reconcile profiles" + "".join(f" {shlex.quote(r)}" for r in refs)
        raise ConfigErrors(broken, rerun=rerun, about="hardware profile")
    return 0
