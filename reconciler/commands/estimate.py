"""`reconcile estimate FILE.gguf`: llama-server's memory per device for one configuration.

Its options are those of a model entry in a desired file (`--ctx`, `--parallel`,
`--cache-type`, `--flash-attn`, `--gpu-layers`; `--ubatch` and `--batch` as `-ub`/`-b` in
`extra_args`) and are checked by the same rules, so that an estimate is never made of a
configuration the desired file would refuse. `--gpus` and `--split` are what a plan decides:
at most 16 GPUs (llama.cpp's limit) and one `--split` share per GPU, so every tensor is placed.
"""

from __future__ import annotations

import argparse
import json
import math
import typing
from collections.abc import Callable
from typing import Any, TextIO

from pydantic import TypeAdapter, ValidationError

from reconciler.config.rules import desired_problems
from reconciler.config.types import CacheType, GpuLayers, Mebibytes, NonNegativeInt, PositiveInt
from reconciler.errors import ReconcileError
from reconciler.estimate.facts import ModelFacts
from reconciler.estimate.memory import MIB, Estimate, RunConfig, estimate
from reconciler.lockfile import facts_from_file
from reconciler.plan.options import MAX_SPLIT_GPUS

__all__ = ["MAX_GPUS", "add_arguments", "estimate_command", "render_table"]

COLUMNS = ("model", "context", "compute", "output", "overhead", "total")
MAX_GPUS = MAX_SPLIT_GPUS + 1  # llama.cpp drives at most 16 devices (llama_max_devices())
MAX_NUMBER = 2**31 - 1  # llama.cpp keeps ctx, slots and batch sizes in 32-bit integers
# The desired file's keys, as this command's options (for the rules' messages).
OPTIONS = {
    "ctx": "--ctx",
    "parallel": "--parallel",
    "cache_type": "--cache-type",
    "flash_attn": "--flash-attn",
    "gpu_layers": "--gpu-layers",
}


class EstimateError(ReconcileError):
    """The options of `reconcile estimate` do not describe a configuration llama.cpp runs."""


def _checked(kind: Any, what: str) -> Callable[[str], Any]:
    """An argparse `type`: the option's text as the desired file's type `kind` takes it (an
    integer where it reads as one), with that type's message when it does not."""
    adapter: TypeAdapter[Any] = TypeAdapter(kind)

    def convert(text: str) -> Any:
        value: Any = text
        if text.lstrip("-").isascii() and text.lstrip("-").isdigit():
            if len(text) > len(str(MAX_NUMBER)) + 1:
                got = text[:24] + "..."
                raise argparse.ArgumentTypeError(f"must be at most {MAX_NUMBER}, got {got}")
            value = int(text)
        try:
            checked = adapter.validate_python(value)
        except ValidationError as exc:
            message = exc.errors(include_url=False)[0]["msg"]
            raise argparse.ArgumentTypeError(message) from None
        if isinstance(checked, int) and checked > MAX_NUMBER:
            raise argparse.ArgumentTypeError(f"must be at most {MAX_NUMBER}, got {checked}")
        return checked

    convert.__name__ = what  # argparse names the type in its own messages
    return convert


def _split(text: str) -> tuple[float, ...]:
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if not parts or not all(math.isfinite(p) and p >= 0 for p in parts) or sum(parts) <= 0:
        raise argparse.ArgumentTypeError(
            f'must be shares (numbers >= 0, not all 0) separated by commas, e.g. 3,1, got "{text}"'
        )
    return parts


def add_arguments(p: argparse.ArgumentParser) -> None:
    positive = _checked(PositiveInt, "positive integer")
    p.add_argument("file", help="the GGUF file (first shard of a split model)")
    p.add_argument(
        "--ctx", type=positive, default=4096, help="context size, all slots (default 4096)"
    )
    p.add_argument("--parallel", type=positive, default=1, help="sequences / server slots")
    p.add_argument("--kv-unified", action="store_true", help="one KV stream shared by all slots")
    p.add_argument("--cache-type", choices=typing.get_args(CacheType), default="f16")
    p.add_argument("--flash-attn", choices=("on", "off", "auto"), default="auto")
    p.add_argument(
        "--gpu-layers",
        type=_checked(GpuLayers, "number of layers"),
        default="all",
        metavar="all|N",
        help="layers on the GPUs (default all; auto is estimated as all)",
    )
    p.add_argument("--ubatch", type=positive, default=512, help="-ub (default 512)")
    p.add_argument("--batch", type=positive, default=2048, help="-b (default 2048)")
    p.add_argument(
        "--gpus",
        type=_checked(NonNegativeInt, "number of GPUs"),
        default=None,
        help=f"GPUs the server gets, at most {MAX_GPUS}; 0: CPU-only build (default 1)",
    )
    p.add_argument(
        "--split",
        type=_split,
        default=None,
        metavar="A,B,...",
        help="--tensor-split proportions, one per GPU (give --gpus too)",
    )
    p.add_argument("--swa-full", action="store_true", help="full-size cache for SWA layers")
    p.add_argument(
        "--overhead-mib",
        type=_checked(Mebibytes, "MiB"),
        default=None,
        help="per-GPU process overhead (default: measured, 588)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _rule_problems(args: argparse.Namespace) -> list[str]:
    """What the desired file's rules say of these options as a model entry."""
    entry = {
        "name": "estimate",
        "gguf": args.file,
        "port": 8080,
        "ctx": args.ctx,
        "parallel": args.parallel,
        "cache_type": args.cache_type,
        "flash_attn": args.flash_attn,
        "gpu_layers": args.gpu_layers,
    }
    out = []
    for loc, message in desired_problems({"version": 1, "models": [entry]}, {}):
        key = str(loc[-1])
        text = message
        for name, flag in OPTIONS.items():
            text = text.replace(f"{name}: ", f"{flag} ")
        option = OPTIONS.get(key)
        out.append(f"{option} {entry[key]}: {text}" if option else text)
    return out


def _device_problems(args: argparse.Namespace, gpus: int) -> list[str]:
    if gpus > MAX_GPUS:
        return [f"--gpus {gpus}: llama.cpp drives at most {MAX_GPUS} GPUs"]
    if args.split is None:
        return []
    shares = ",".join(f"{s:g}" for s in args.split)
    if gpus == 0:
        return [f"--split {shares}: a CPU-only build (--gpus 0) splits nothing; drop --split"]
    if len(args.split) != gpus:
        given = f"--gpus {gpus}" + (" (the default)" if args.gpus is None else "")
        return [
            f"--split {shares} gives {len(args.split)} shares for {given}: give one share per "
            f"GPU, e.g. --gpus {len(args.split)} --split {shares}"
        ]
    if len(args.split) > MAX_SPLIT_GPUS:
        return [f"--split: llama.cpp takes at most {MAX_SPLIT_GPUS} shares"]
    return []


def _config(args: argparse.Namespace) -> RunConfig:
    gpus = 1 if args.gpus is None else args.gpus
    problems = _device_problems(args, gpus) + _rule_problems(args)
    if problems:
        raise EstimateError("\n".join(f"reconcile estimate: {p}" for p in problems))
    extra = {} if args.overhead_mib is None else {"overhead_mib": args.overhead_mib}
    return RunConfig(
        ctx=args.ctx,
        parallel=args.parallel,
        kv_unified=args.kv_unified,
        cache_type_k=args.cache_type,
        cache_type_v=args.cache_type,
        flash_attn=args.flash_attn,
        ubatch=args.ubatch,
        batch=args.batch,
        gpu_layers="all" if args.gpu_layers == "auto" else args.gpu_layers,
        gpus=gpus,
        tensor_split=args.split,
        swa_full=args.swa_full,
        **extra,
    )


def render_table(result: Estimate) -> list[str]:
    rows = [["device", *COLUMNS]]
    for device in result.devices:
        mib = device.mib()
        rows.append([device.name, *(f"{mib[c + '_mib']:.1f}" for c in COLUMNS)])
    totals = [sum(getattr(d, c) for d in result.devices) / MIB for c in COLUMNS[:-1]]
    rows.append(["total", *(f"{v:.1f}" for v in totals), f"{result.total / MIB:.1f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]


def _summary(path: str, facts: ModelFacts, cfg: RunConfig) -> str:
    slots = f"ctx {cfg.ctx} x{cfg.parallel}" + (" unified" if cfg.kv_unified else "")
    where = "CPU only" if cfg.gpus == 0 else f"{cfg.gpus} GPU{'s' if cfg.gpus > 1 else ''}"
    return (
        f"{path}: {facts.architecture}, {facts.n_layer} layers, {facts.file_size / MIB:.0f} MiB "
        f"file; {slots}, {cfg.cache_type_k} cache, flash attention {cfg.flash_attn}, "
        f"ubatch {cfg.ubatch}, gpu layers {cfg.gpu_layers}, {where} (MiB)"
    )


def estimate_command(args: argparse.Namespace, out: TextIO) -> int:
    cfg = _config(args)  # the options first: no file is read for a configuration refused
    facts = facts_from_file(args.file)
    result = estimate(facts, cfg)
    if args.json:
        devices = [
            {"name": d.name, **{k: round(v, 2) for k, v in d.mib().items()}} for d in result.devices
        ]
        payload = {
            "file": args.file,
            "devices": devices,
            "total_mib": round(result.total / MIB, 2),
            "notes": list(result.notes),
        }
        out.write(json.dumps(payload, indent=2) + "\n")
        return 0
    out.write(_summary(args.file, facts, cfg) + "\n")
    for line in render_table(result):
        out.write(line + "\n")
    for note in result.notes:
        out.write(f"note: {note}\n")
    return 0
