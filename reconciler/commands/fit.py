"""`reconcile fit MODEL.gguf`: would this model fit now, beside what runs?

Reads the GGUF, observes the machine (or a profile, or a snapshot), optionally plans a desired
file, and asks `reconciler.plan.whatif` (pure) the question; this module only parses options
and renders the answer. Exit codes: 0 it fits (every layer on the GPU(s), possibly in place of
lower-priority models of `--with`'s file), `NO_FIT` (3) it does not (the answer still says the
largest context that would fit, or how many layers), 1 an error.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from reconciler.errors import ReconcileError

if TYPE_CHECKING:
    from reconciler.config.desired import Desired
    from reconciler.estimate.facts import ModelFacts
    from reconciler.plan.whatif import AtCtx, Row, Verdict, WhatIf
    from reconciler.state import ObservedState

__all__ = ["FIT_FORMAT", "NO_FIT", "add_arguments", "fit_command", "fit_json", "fit_text"]

NO_FIT = 3  # 1 is an error, 2 is plan's "changes pending": 3 means only "does not fit"
FIT_FORMAT = 1  # the JSON's format_version
DEFAULT_CTX = 4096  # the desired file's default `ctx`
# The parser is built for every command: what `fit` needs (pydantic, the planner) is imported
# when it runs, so these two restate the desired file's cache types and whatif's default
# (tests/commands/test_fit.py holds them equal).
CACHE_TYPES = ("f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl")
DEFAULT_CACHE_TYPES = ("f16", "q8_0", "q4_0")
MIB = 1024 * 1024
MAX_NAME = 48  # a model name's length (config.types.ModelName)


def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1 or len(value) > 9:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to 999999999, not {value!r}"
        )
    return number


def _priority(value: str) -> int:
    try:
        if len(value) <= 10:
            return int(value)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"must be a whole number (a model's priority), not {value!r}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Would this model fit now, beside what runs? Per GPU (and split) the largest context "
        "that fits with each cache type, partial offload where every layer does not fit, and "
        "with --with, which lower-priority models of that file would give way. Exit 0: it "
        f"fits; {NO_FIT}: it does not fit with every layer on a GPU; 1: an error."
    )
    p.add_argument("file", help="the GGUF file (first shard of a split model)")
    p.add_argument(
        "--ctx",
        type=_count,
        help=f"the context to ask about (default {DEFAULT_CTX}, or the trained context where "
        "smaller; a larger one is answered, and said to be beyond the trained context)",
    )
    p.add_argument("--parallel", type=_count, default=1, help="sequences / server slots")
    p.add_argument(
        "--cache-type",
        choices=CACHE_TYPES,
        help="only this KV cache type (default: " + ", ".join(DEFAULT_CACHE_TYPES) + ")",
    )
    p.add_argument("--flash-attn", choices=("on", "off", "auto"), default="auto")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--profile", metavar="NAME|PATH", help="an idle profiled machine")
    source.add_argument("--observed", metavar="FILE", help="a snapshot (`status --json`)")
    p.add_argument(
        "--with",
        dest="with_file",
        metavar="DESIRED",
        help="beside what this desired file's plan runs; its lower-priority models may give way",
    )
    p.add_argument(
        "--priority",
        type=_priority,
        help="the model's priority among --with's models (default 0; ties stay with theirs)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output (format 1)")


def _name(path: Path, taken: set[str]) -> str:
    """A model name for the candidate, from the file's name, unlike any of `taken`."""
    stem = re.sub(r"[^a-z0-9]+", "-", path.name.lower().removesuffix(".gguf")).strip("-")
    name = stem[:40].strip("-") or "model"
    if name not in taken:
        return name
    for n in range(1, len(taken) + 2):  # len(taken) + 1 names: one of them is free
        suffix = "-fit" if n == 1 else f"-fit{n}"
        candidate = name[: MAX_NAME - len(suffix)].rstrip("-") + suffix
        if candidate not in taken:
            return candidate
    raise AssertionError(taken)  # unreachable: more candidates than taken names


def _cache_types(args: argparse.Namespace) -> tuple[str, ...]:
    if args.flash_attn == "off":
        if args.cache_type not in (None, "f16"):
            raise ReconcileError(
                f"reconcile fit: --cache-type {args.cache_type} quantizes the V cache, which "
                "llama.cpp allows only with flash attention; use --flash-attn on (or auto), "
                "or --cache-type f16"
            )
        return ("f16",)
    return (args.cache_type,) if args.cache_type else DEFAULT_CACHE_TYPES


def fit_command(args: argparse.Namespace, out: TextIO) -> int:
    from reconciler.config.desired import ModelSpec  # noqa: PLC0415
    from reconciler.lockfile import facts_from_file  # noqa: PLC0415
    from reconciler.pipeline import Pipeline  # noqa: PLC0415
    from reconciler.plan.whatif import what_if  # noqa: PLC0415

    cache_types = _cache_types(args)
    if args.priority is not None and not args.with_file:
        raise ReconcileError(
            "reconcile fit: --priority ranks the model among a desired file's models; "
            "give --with FILE too"
        )
    facts = facts_from_file(args.file)
    pipeline = Pipeline(observed=args.observed, profile=args.profile)
    desired: Desired | None = None
    model_facts: dict[str, ModelFacts] = {}
    problems: dict[str, str] = {}
    if args.with_file:
        loaded = pipeline.load(args.with_file)
        desired = loaded.file.spec
        inputs = pipeline.model_inputs(desired, loaded.file.path)
        model_facts, problems = dict(inputs.facts), dict(inputs.problems)
    observed = pipeline.observe()
    trained = facts.n_ctx_train
    ctx = args.ctx or (min(DEFAULT_CTX, trained) if trained > 0 else DEFAULT_CTX)
    candidate = ModelSpec(
        name=_name(Path(args.file), {m.name for m in desired.models} if desired else set()),
        gguf=Path(args.file),
        priority=args.priority or 0,
        ctx=ctx,
        parallel=args.parallel,
        cache_type=cache_types[0],
        flash_attn=args.flash_attn,
    )
    result = what_if(
        candidate,
        facts,
        observed,
        desired=desired,
        facts=model_facts,
        problems=problems,
        cache_types=cache_types,
    )
    if args.json:
        answer = fit_json(result, args.file, observed.source, args.with_file, args.observed)
        out.write(json.dumps(answer, indent=2))
        out.write("\n")
    else:
        for line in fit_text(result, args.file, _against(observed, args.observed), args.with_file):
            out.write(line + "\n")
    return 0 if result.verdict.fits else NO_FIT


def _against(observed: ObservedState, snapshot: str | None) -> str:
    """Where the machine was read: a profile or the machine, or a snapshot file and what that
    snapshot was taken from (as `plan --observed` and `status --observed` say)."""
    if snapshot is None:
        return observed.source
    when = f"observed {observed.observed_at}; " if observed.observed_at else ""
    return f"snapshot {snapshot} ({when}taken from {observed.source})"


def _at_json(row: Row) -> dict[str, Any]:
    at = row.at
    need = dict(zip(row.gpus, at.need_mib, strict=True))
    return {
        "status": at.status,
        "need_mib": {**need, "host": at.host_mib},
        "displaces": list(at.displaces),
        "gpu_layers": at.gpu_layers,
        "partial_mib": at.partial_mib,
    }


def _verdict_json(v: Verdict) -> dict[str, Any]:
    return {
        "fits": v.fits,
        "status": v.status,
        "cache_type": v.cache_type,
        "gpus": list(v.gpus),
        "gpu_layers": v.gpu_layers,
        "need_mib": dict(v.need_mib),
        "reason": v.reason,
        "planned": v.planned,
        "split": v.split,
        "displaced": [
            {"model": d.model, "priority": d.priority, "before": d.before, "after": d.after,
             "reason": d.reason}
            for d in v.displaced
        ],
    }  # fmt: skip


def fit_json(
    w: WhatIf, file: str, source: str, with_file: str | None, snapshot: str | None = None
) -> dict[str, Any]:
    """The answer for scripts (README: "reconcile fit"); keys are only ever added. `source` is
    what the machine was read from (a snapshot's own source); `snapshot` the snapshot file
    (`--observed`), else null."""
    f = w.facts
    return {
        "format_version": FIT_FORMAT,
        "file": file,
        "model": {
            "architecture": f.architecture,
            "layers": f.n_layer,
            "trained_ctx": f.n_ctx_train,
            "file_mib": round(f.file_size / MIB, 1),
        },
        "asked": {
            "ctx": w.ctx,
            "parallel": w.candidate.parallel,
            "flash_attn": w.candidate.flash_attn,
            "cache_types": list(w.cache_types),
            "priority": w.candidate.priority,
            "with": with_file,
        },
        "source": source,
        "snapshot": snapshot,
        "ctx_searched_up_to": w.cap,
        "gpus": [
            {
                "label": r.budget.label,
                "name": r.budget.name,
                "budget_mib": r.budget.budget_mib,
                "free_mib": r.free_mib,
                "after_giving_way_mib": r.after_mib,
                "takes_new_starts": r.place,
                "note": r.budget.why_not or r.budget.too_hot,
            }
            for r in w.rooms
        ],
        "host_free_mib": w.host_free_mib,
        "options": [
            {
                "gpus": list(r.gpus),
                "tensor_split": None if r.tensor_split is None else list(r.tensor_split),
                "cache_type": r.cache_type,
                "max_ctx": r.max_ctx,
                "max_ctx_giving_way": r.max_ctx_displacing,
                "at_ctx": _at_json(r),
            }
            for r in w.rows
        ],
        "verdict": _verdict_json(w.verdict),
        "notes": list(w.notes),
    }


def _largest(w: WhatIf, r: Row) -> str:
    trained = " (trained)" if r.max_ctx == w.cap and w.facts.n_ctx_train > 0 else ""
    text = "-" if r.max_ctx is None else f"{r.max_ctx}{trained}"
    if r.max_ctx_displacing is not None:
        text += f"; {r.max_ctx_displacing} giving way"
    return text


def _mib(parts: tuple[int, ...]) -> str:
    return " + ".join(str(n) for n in parts) + " MiB"


def _at_text(at: AtCtx) -> str:
    gives = f" if {', '.join(at.displaces)} give{'s' if len(at.displaces) == 1 else ''} way"
    if at.status == "fits":
        return f"fits: {_mib(at.need_mib)}"
    if at.status == "displacing":
        return f"fits{gives}: {_mib(at.need_mib)}"
    if at.status == "partial":
        where = gives if at.displaces else ""
        return f"{at.gpu_layers} layers on the GPU{where}: {at.partial_mib} MiB"
    return f"does not fit: needs {_mib(at.need_mib)}"


def _table(w: WhatIf) -> list[str]:
    rows = [["GPUs", "cache", "largest ctx, every layer", f"at ctx {w.ctx}"]]
    for r in w.rows:
        where = ", ".join(r.gpus) if len(r.gpus) > 1 else r.gpus[0]
        split = f" split {':'.join(f'{s:.2f}' for s in r.tensor_split)}" if r.tensor_split else ""
        rows.append([f"GPU {where}{split}", r.cache_type, _largest(w, r), _at_text(r.at)])
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return ["  " + "  ".join(c.ljust(n) for c, n in zip(row, widths, strict=False)) + "  " + row[3]
            for row in rows]  # fmt: skip


def _verdict_text(w: WhatIf, with_file: str | None) -> list[str]:
    v = w.verdict
    cache = f"an {v.cache_type}" if v.cache_type == "f16" else f"a {v.cache_type}"
    where = ", ".join(f"GPU {g}" for g in v.gpus)
    if len(v.gpus) > 1:
        where = f"a split over {where}" if v.split else where.replace(", ", " or ")
    ctx = f"ctx {w.ctx}"
    if 0 < w.facts.n_ctx_train < w.ctx:
        ctx += f" (beyond the trained context {w.facts.n_ctx_train})"
    if v.status == "no":
        return [f"Does not fit at {ctx}: {v.reason}."]
    if v.status == "partial":
        head = (
            f"Does not fit with every layer on a GPU at {ctx}; with gpu_layers: "
            f"{v.gpu_layers} (of {w.facts.n_layer + 1}) it runs on {where} with {cache} cache"
        )
    elif v.planned:
        head = f"Fits: the plan of {with_file} would start it on {where} at {ctx}"
        head += f" with {cache} cache"
    else:
        head = f"Fits at {ctx} with {cache} cache on {where}"
    need = ", ".join(
        f"{n} MiB on {'the host' if k == 'host' else 'GPU ' + k}" for k, n in v.need_mib.items()
    )
    lines = [f"{head} ({need})."]
    if v.displaced:
        lines.append("It would displace:")
        lines += [
            f"  {d.model} (priority {d.priority}): {d.before} -> {d.after}: {d.reason}"
            for d in v.displaced
        ]
    return lines


def _programs(programs: tuple[str, ...]) -> str:
    """The other programs holding memory on a GPU, the largest two named."""
    if not programs:
        return ""
    more = f" and {len(programs) - 2} more" if len(programs) > 2 else ""
    return f" (other programs: {', '.join(programs[:2])}{more})"


def fit_text(w: WhatIf, file: str, source: str, with_file: str | None) -> list[str]:
    f = w.facts
    trained = f"trained context {f.n_ctx_train}" if f.n_ctx_train > 0 else "trained context unknown"
    lines = [
        f"{file}: {f.architecture}, {f.n_layer} layers, {trained}, {f.file_size / MIB:.0f} MiB "
        f"file; parallel {w.candidate.parallel}, flash attention {w.candidate.flash_attn}"
    ]
    beside = (
        f"the plan of {with_file} (priority {w.candidate.priority})" if with_file else "what runs"
    )
    lines.append(f"Against {source}, beside {beside}:")
    for r in w.rooms:
        b = r.budget
        why = b.why_not or b.too_hot
        if not r.place:
            lines.append(f"  GPU {b.label} {b.name}: takes no new model ({why})")
            continue
        giving = (
            f"; {r.after_mib} if lower-priority models give way" if r.after_mib > r.free_mib else ""
        )
        free = f"{r.free_mib} MiB free of its {b.budget_mib} MiB budget"
        lines.append(f"  GPU {b.label} {b.name}: {free}{giving}{_programs(b.programs)}")
    lines.append(f"  host: {w.host_free_mib} MiB of RAM free for models")
    lines += [f"  note: {n}" for n in w.notes]
    if w.rows:
        lines += ["", *_table(w)]
    return [*lines, "", *_verdict_text(w, with_file)]
