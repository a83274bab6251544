"""`reconcile check`: validate a desired file (and its fit on hardware profiles)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from reconciler.config.desired import ModelSpec
from reconciler.config.loader import (
    DesiredFile,
    InvalidDesired,
    ProfileFile,
    check_hardware,
    load_profile,
)
from reconciler.config.profile import Profile
from reconciler.config.rules import hardware_problems
from reconciler.config.source import Source
from reconciler.errors import ConfigError, ConfigErrors, ReconcileError
from reconciler.gguf.regular import present
from reconciler.lockfile import lock_path, read_lock
from reconciler.observe.snapshot import from_profile
from reconciler.pipeline import DesiredInput, Pipeline

__all__ = [
    "DoesNotFit",
    "Finding",
    "check",
    "describe_model",
    "describe_profile",
    "fit_findings",
    "github",
    "headroom_warning",
    "model_file_errors",
]


def describe_model(m: ModelSpec) -> list[str]:
    """The columns of one model's summary line."""
    if m.backend == "llama.cpp":
        slots = f"ctx {m.ctx}" + (f" x{m.parallel}" if m.parallel > 1 else "")
        size = f"{slots} {m.cache_type}"
        here = m.gguf is not None and present(m.gguf)
        source = str(m.gguf) + ("" if here else " (absent here: sized from the lock file)")
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


@dataclass(frozen=True)
class Finding:
    """A model that does not fit a profile: an error when it is required, else a warning."""

    error: ConfigError
    required: bool


def fit_findings(
    pipeline: Pipeline, loaded: DesiredInput, profile: ProfileFile
) -> tuple[list[Finding], str]:
    """Plan the desired file on the idle profiled machine; what does not fit, and a summary."""
    desired = loaded.file
    plan = pipeline.plan(loaded, from_profile(profile.spec, profile.name))
    index = {m.name: i for i, m in enumerate(desired.spec.models)}
    findings = []
    placed = 0
    instead = []
    for action in plan.actions:
        if action.action not in ("blocked", "stop"):
            placed += 1
            if action.variant and action.variant != action.model:
                instead.append(f"{action.model} as {action.variant}")
            continue
        spec = desired.spec.model_named(action.model)
        required = spec is not None and spec.required
        kind = "required model" if required else "model"
        message = f"{kind} {action.model} does not fit on profile {profile.name}: {action.reason}"
        findings.append(Finding(desired.error(("models", index[action.model]), message), required))
    summary = f"{placed} of {len(plan.actions)} models fit"
    if instead:  # a fallback fits, not the model itself
        summary += f" ({', '.join(instead)})"
    return findings, summary


def _hardware_of_invalid(
    source: Source, file: str, profiles: list[ProfileFile]
) -> list[ConfigError]:
    """The GPUs a file that does not validate names (in `gpus`, `pin`) that a profile lacks,
    so that they come in the same pass as its other problems, not after those are fixed;
    from what was read (a pipe is read once). A file the YAML reader itself found problems
    in (those are the ones that matter) gets none."""
    if not profiles or source.errors:
        return []
    context = {"base_dir": Path(os.path.abspath(file)).parent}
    errors = []
    for p in profiles:
        uuids = [g.uuid for g in p.spec.gpus]
        where = f"profile {p.name}"
        problems = hardware_problems(source.data, context, len(uuids), uuids, where)
        errors += [source.error(loc, message) for loc, message in problems]
    return errors


def model_file_errors(pipeline: Pipeline, loaded: DesiredInput) -> list[ConfigError]:
    """Each GGUF that is present but cannot be used (a directory, not GGUF, truncated, corrupt
    metadata) or no longer matches its lock entry, on its model's `gguf:` line. A file absent
    here is no error: the lock file stands in for it (CI)."""
    desired = loaded.file
    spec = desired.spec
    inputs = pipeline.model_inputs(spec, desired.path)
    lock_file = lock_path(desired.path)
    lock = read_lock(lock_file)  # parsed once per process: model_inputs read it already
    errors = []
    for index, m in enumerate(spec.models):
        if m.backend != "llama.cpp" or m.gguf is None or not present(m.gguf):
            continue
        where = ("models", index, "gguf")
        problem = inputs.problems.get(m.name)
        entry = lock.models.get(m.name) if lock is not None else None
        if problem is not None:
            errors.append(desired.error(where, problem))
        elif entry is not None and entry.facts.fingerprint != inputs.facts[m.name].fingerprint:
            message = (
                f"{m.gguf} no longer matches its entry in {lock_file}; run `reconcile lock "
                f"{desired.path}` to update it"
            )
            errors.append(desired.error(where, message))
    return errors


def headroom_warning(desired: DesiredFile, profile: ProfileFile) -> ConfigError | None:
    """`reserve_mib` set alone, which the default `reserve_fraction` overrides on some GPU of
    the profile: the GPU where the fraction keeps the most beyond it is named."""
    headroom = desired.spec.policy.headroom
    given = headroom.model_fields_set
    if "reserve_mib" not in given or "reserve_fraction" in given:
        return None
    gpus = profile.spec.gpus
    extra = [headroom.reserve_for(g.memory_mib) - headroom.reserve_mib for g in gpus]
    over = [i for i, mib in enumerate(extra) if mib > 0]
    if not over:
        return None
    index = max(over, key=lambda i: extra[i])  # the first GPU on a tie
    total = gpus[index].memory_mib
    others = [i for i in over if i != index]
    also = f" (likewise on GPU{'s' if len(others) > 1 else ''} {', '.join(map(str, others))})"
    message = (
        f"{headroom.reserve_mib} MiB is overridden on profile {profile.name}: the default "
        f"reserve_fraction {headroom.reserve_fraction:.2f} keeps {headroom.reserve_for(total)} MiB "
        f"of GPU {index} ({total} MiB) free{also if others else ''}, the larger applies; "
        "set reserve_fraction: 0 to use reserve_mib alone, or set both"
    )
    return desired.error(("policy", "headroom", "reserve_mib"), message)


def github(error: ConfigError, level: str) -> str:
    """A GitHub Actions annotation on the file's line."""
    message = error.message if not error.path else f"{error.path}: {error.message}"
    where = f"file={error.file}" + (f",line={error.line},col={error.col}" if error.line else "")
    return f"::{level} {where}::" + message.replace("%", "%25").replace("\n", "%0A")


class DoesNotFit(ReconcileError):
    """A required model does not fit a profile (its lines go to stderr, after the report)."""


def check(args: argparse.Namespace, out: TextIO) -> int:
    """Every file in turn (pre-commit passes several); a file's config errors do not stop the
    others, and are reported together at the end, each file's with the command that checks it
    again. In text, the report goes to `out` and every error (a required model that does not
    fit, a config error) to stderr, after it; with `--format github` everything is an
    annotation on `out`."""
    profiles = [load_profile(p) for p in args.profile or []]
    pipeline = Pipeline()  # the profiles are the machines: it never observes this one
    broken: list[ConfigErrors] = []
    misfits: list[ConfigError] = []
    for file in dict.fromkeys(args.files):  # each once, in order
        found, errors = _check_file(pipeline, file, profiles, args.format, out)
        misfits += found
        broken += errors
    if args.format == "github":
        for error in (e for group in broken for e in group.errors):
            out.write(github(error, "error") + "\n")
        return 1 if misfits or broken else 0
    lines = [f"error: {e.render()}" for e in misfits]
    # One footer per command to run again: the desired files' together, a lock file's its own.
    footers: dict[tuple[str, str], list[ConfigError]] = {}
    for group in broken:
        footers.setdefault((group.rerun, group.about), []).extend(group.errors)
    lines += [ConfigErrors(e, rerun, about).render() for (rerun, about), e in footers.items()]
    if misfits and not broken:
        noun = "model does" if len(misfits) == 1 else "models do"
        lines.append(
            f"{len(misfits)} required {noun} not fit; each line above says why and what would "
            "make it fit; change the file and run `reconcile check` again."
        )
    if lines:
        raise DoesNotFit("\n".join(lines))
    return 0


def _check_file(
    pipeline: Pipeline, file: str, profiles: list[ProfileFile], fmt: str, out: TextIO
) -> tuple[list[ConfigError], list[ConfigErrors]]:
    """The required models that do not fit a profile (in text; annotated on `out` in github
    format), and the problems of the file and of the files beside it (its lock)."""
    try:
        loaded = pipeline.load(file)
    except InvalidDesired as exc:
        hardware = _hardware_of_invalid(exc.source, file, profiles)
        if hardware:
            return [], [ConfigErrors([*exc.errors, *hardware], exc.rerun, exc.about)]
        return [], [exc]
    except ConfigErrors as exc:
        return [], [exc]
    desired = loaded.file
    errors = [e for p in profiles for e in check_hardware(desired, p)]
    if errors:
        return [], [ConfigErrors(errors)]
    try:
        errors = model_file_errors(pipeline, loaded)
    except ConfigErrors as exc:  # the lock file beside it
        return [], [exc]
    if errors:
        return [], [ConfigErrors(errors)]
    spec = desired.spec
    count = len(spec.models)
    text = fmt != "github"
    if text:
        out.write(f"{file}: valid, {count} model{'s' if count != 1 else ''}\n")
        for line in _table([describe_model(m) for m in spec.models]):
            out.write(line + "\n")
    misfits = []
    for p in profiles:
        warning = headroom_warning(desired, p)
        if warning is not None:
            out.write(
                (f"warning: {warning.render()}" if text else github(warning, "warning")) + "\n"
            )
        findings, summary = fit_findings(pipeline, loaded, p)
        for f in findings:
            if f.required and text:
                misfits.append(f.error)  # on stderr, after the report
                continue
            level = "error" if f.required else "warning"
            out.write((f"{level}: {f.error.render()}" if text else github(f.error, level)) + "\n")
            if f.required:
                misfits.append(f.error)
        if text:
            out.write(describe_profile(p.name, p.spec) + "\n")
            out.write(f"  {summary}\n")
    return misfits, []
