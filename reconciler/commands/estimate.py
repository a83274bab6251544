"""`reconcile estimate FILE.gguf`: llama-server's memory per device for one configuration."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from reconciler.estimate.facts import ModelFacts
from reconciler.estimate.memory import CACHE_TYPES, MIB, Estimate, RunConfig, estimate
from reconciler.lockfile import facts_from_file

__all__ = ["add_arguments", "estimate_command", "render_table"]

COLUMNS = ("model", "context", "compute", "output", "overhead", "total")


def _layers(value: str) -> int | str:
    if value == "all":
        return value
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


def _split(value: str) -> tuple[float, ...]:
    parts = tuple(float(p) for p in value.split(","))
    if not parts or any(p < 0 for p in parts) or sum(parts) <= 0:
        raise ValueError(value)
    return parts


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="the GGUF file (first shard of a split model)")
    p.add_argument("--ctx", type=int, default=4096, help="context size, all slots (default 4096)")
    p.add_argument("--parallel", type=int, default=1, help="sequences / server slots")
    p.add_argument("--kv-unified", action="store_true", help="one KV stream shared by all slots")
    p.add_argument("--cache-type", choices=sorted(CACHE_TYPES), default="f16")
    p.add_argument("--flash-attn", choices=("on", "off", "auto"), default="auto")
    p.add_argument("--gpu-layers", type=_layers, default="all", metavar="all|N")
    p.add_argument("--ubatch", type=int, default=512)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--gpus", type=int, default=1, help="GPUs the server gets; 0: CPU-only build")
    p.add_argument(
        "--split",
        type=_split,
        default=None,
        metavar="A,B,...",
        help="--tensor-split proportions, one per GPU",
    )
    p.add_argument("--swa-full", action="store_true", help="full-size cache for SWA layers")
    p.add_argument("--overhead-mib", type=int, default=None, help="per-GPU process overhead")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _config(args: argparse.Namespace) -> RunConfig:
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
        gpu_layers=args.gpu_layers,
        gpus=args.gpus,
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
    facts = facts_from_file(args.file)
    cfg = _config(args)
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
