"""Write the lock files of the example desired states, from the published model shapes.

The examples name real models (Qwen2.5, Llama 3, Gemma 3, ...) whose weights are not in this
repository. Their lock files are made from GGUF headers written with each model's published
architecture (layers, widths, heads, vocabulary, sliding window) and its quantisation's main
tensor type, so `make run` can plan without the weights. K-quant mixes are approximated by
their main type (Q4_K_M as Q4_K), which puts the weights a few percent low; run
`reconcile lock desired/FILE.yaml` where the real files are to replace these entries.

    .venv/bin/python bench/example_locks.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.config.loader import load_desired  # noqa: E402
from reconciler.lockfile import LockEntry, LockFile, facts_from_file, lock_path, write_lock  # noqa: E402
from tests.ggufs import Shape, write_gguf  # noqa: E402

# File name -> published shape (architecture, layers, widths, heads, vocabulary, type).
SHAPES = {
    "Qwen2.5-7B-Instruct-Q4_K_M.gguf": Shape(
        "qwen2.5-7b",
        arch="qwen2",
        n_layer=28,
        n_embd=3584,
        n_head=28,
        n_head_kv=4,
        n_ff=18944,
        n_vocab=152064,
        weights="q4_k",
        ctx_train=32768,
    ),
    "nomic-embed-text-v1.5.f16.gguf": Shape(
        "nomic-embed",
        arch="nomic-bert",
        n_layer=12,
        n_embd=768,
        n_head=12,
        n_head_kv=12,
        n_ff=3072,
        n_vocab=30522,
        weights="f16",
        ctx_train=2048,
        tied=True,
    ),
    "Qwen2.5-Coder-14B-Instruct-Q4_K_M.gguf": Shape(
        "qwen2.5-coder-14b",
        arch="qwen2",
        n_layer=48,
        n_embd=5120,
        n_head=40,
        n_head_kv=8,
        n_ff=13824,
        n_vocab=152064,
        weights="q4_k",
        ctx_train=32768,
    ),
    "Qwen2.5-Coder-1.5B-Instruct-Q8_0.gguf": Shape(
        "qwen2.5-coder-1.5b",
        arch="qwen2",
        n_layer=28,
        n_embd=1536,
        n_head=12,
        n_head_kv=2,
        n_ff=8960,
        n_vocab=151936,
        weights="q8_0",
        ctx_train=32768,
        tied=True,
    ),
    "Llama-3.3-70B-Instruct-Q4_K_M.gguf": Shape(
        "llama-3.3-70b",
        n_layer=80,
        n_embd=8192,
        n_head=64,
        n_head_kv=8,
        n_ff=28672,
        n_vocab=128256,
        weights="q4_k",
        ctx_train=131072,
    ),
    "Llama-3.3-70B-Instruct-IQ3_XS.gguf": Shape(
        "llama-3.3-70b-iq3",
        n_layer=80,
        n_embd=8192,
        n_head=64,
        n_head_kv=8,
        n_ff=28672,
        n_vocab=128256,
        weights="iq3_s",
        ctx_train=131072,
    ),
    "Qwen2.5-3B-Instruct-Q4_K_M.gguf": Shape(
        "qwen2.5-3b",
        arch="qwen2",
        n_layer=36,
        n_embd=2048,
        n_head=16,
        n_head_kv=2,
        n_ff=11008,
        n_vocab=151936,
        weights="q4_k",
        ctx_train=32768,
        tied=True,
    ),
    "bge-m3-Q8_0.gguf": Shape(
        "bge-m3",
        arch="bert",
        n_layer=24,
        n_embd=1024,
        n_head=16,
        n_head_kv=16,
        n_ff=4096,
        n_vocab=250002,
        weights="q8_0",
        ctx_train=8192,
        tied=True,
    ),
    "Llama-3.1-8B-Instruct-Q4_K_M.gguf": Shape(
        "llama-3.1-8b",
        n_layer=32,
        n_embd=4096,
        n_head=32,
        n_head_kv=8,
        n_ff=14336,
        n_vocab=128256,
        weights="q4_k",
        ctx_train=131072,
    ),
    "Llama-3.2-3B-Instruct-Q4_K_M.gguf": Shape(
        "llama-3.2-3b",
        n_layer=28,
        n_embd=3072,
        n_head=24,
        n_head_kv=8,
        n_ff=8192,
        n_vocab=128256,
        weights="q4_k",
        ctx_train=131072,
        tied=True,
    ),
    "gemma-3-12b-it-Q4_K_M.gguf": Shape(
        "gemma-3-12b",
        arch="gemma3",
        n_layer=48,
        n_embd=3840,
        n_head=16,
        n_head_kv=8,
        head_dim=256,
        n_ff=15360,
        n_vocab=262208,
        weights="q4_k",
        ctx_train=131072,
        n_swa=1024,
        tied=True,
    ),
}


HEADER = (
    "# Stand-in lock for an example: made by bench/example_locks.py from the published shapes\n"
    "# of these models (K-quant mixes approximated by their main type), not from the files.\n"
    "# Run `reconcile lock` where the real GGUF files are to replace it.\n"
)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for desired_file in sorted((ROOT / "desired").glob("*.yaml")):
            if desired_file.name.endswith(".lock.yaml"):
                continue
            desired = load_desired(desired_file).spec
            entries = {}
            for m in desired.models:
                if m.gguf is None:
                    continue
                header = write_gguf(Path(tmp) / m.gguf.name, SHAPES[m.gguf.name], sparse=True)
                entries[m.name] = LockEntry(gguf=str(m.gguf), facts=facts_from_file(header))
            if entries:
                path = lock_path(desired_file)
                write_lock(LockFile(models=entries), path, HEADER)
                print(f"wrote {path.relative_to(ROOT)}: {len(entries)} models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
