"""Real GGUF files for tests and calibration, written with the `gguf` package.

`Shape` describes a model; `write_gguf` writes a file llama.cpp can load (a tokenizer of the
right size, every tensor the architecture needs, random or zero weights). Tests use tiny
shapes; the calibration benchmark uses larger ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np
from gguf.constants import GGMLQuantizationType

__all__ = ["SHAPES", "Shape", "write_gguf"]


@dataclass(frozen=True)
class Shape:
    name: str
    arch: str = "llama"
    n_layer: int = 2
    n_embd: int = 256
    n_head: int = 4
    n_head_kv: int | list[int] = 4
    n_ff: int = 512
    n_vocab: int = 1024
    head_dim: int | None = None  # key/value length when not n_embd / n_head
    tied: bool = False
    weights: str = "f16"  # f16 | q8_0 | q4_0 | f32
    n_swa: int = 0
    swa_pattern: int = 0  # written as {arch}.attention.sliding_window_pattern when set
    ctx_train: int = 8192
    extra: dict[str, object] = field(default_factory=dict)  # more metadata, raw keys


SHAPES = {
    # calibration shapes: llama-style, multi-head and grouped-query attention
    "mha": Shape("mha", n_layer=6, n_embd=512, n_head=8, n_head_kv=8, n_ff=1408, n_vocab=32000),
    "gqa": Shape("gqa", n_layer=8, n_embd=768, n_head=12, n_head_kv=4, n_ff=2048, n_vocab=32000),
    "gqa-wide": Shape(
        "gqa-wide", n_layer=4, n_embd=1024, n_head=16, n_head_kv=2, n_ff=2816, n_vocab=49152
    ),
    "mha-odd": Shape(
        "mha-odd", n_layer=5, n_embd=640, n_head=10, n_head_kv=10, n_ff=1728, n_vocab=32000
    ),
    # GPU measurement shapes: 1.6 and 3.7 GiB in F16
    "gqa-2g": Shape(
        "gqa-2g", n_layer=16, n_embd=2048, n_head=16, n_head_kv=4, n_ff=5632, n_vocab=32000
    ),
    # header-only tests of a 40 GB-class file: Llama 3 70B's shape in Q4_0 (37 GiB)
    "llama-70b": Shape(
        "llama-70b",
        n_layer=80,
        n_embd=8192,
        n_head=64,
        n_head_kv=8,
        n_ff=28672,
        n_vocab=128256,
        weights="q4_0",
    ),
    "mha-3g": Shape(
        "mha-3g", n_layer=16, n_embd=3072, n_head=24, n_head_kv=24, n_ff=8192, n_vocab=32000
    ),
}

_TYPES = {
    "f32": GGMLQuantizationType.F32,
    "f16": GGMLQuantizationType.F16,
    "q8_0": GGMLQuantizationType.Q8_0,
    "q4_0": GGMLQuantizationType.Q4_0,
    # header-only (sparse) files: the gguf package cannot quantize to these
    "q4_k": GGMLQuantizationType.Q4_K,
    "q6_k": GGMLQuantizationType.Q6_K,
    "iq3_s": GGMLQuantizationType.IQ3_S,
}


def _tokens(n_vocab: int) -> tuple[list[bytes], list[float], list[int]]:
    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{i:02X}>".encode() for i in range(256)]
    types = [2, 3, 3] + [6] * 256
    while len(tokens) < n_vocab:
        tokens.append(f"\u2581t{len(tokens)}".encode())
        types.append(1)
    tokens, types = tokens[:n_vocab], types[:n_vocab]
    scores = [-float(i) for i in range(n_vocab)]
    return tokens, scores, types


def _matrix(rng: np.random.Generator, rows: int, cols: int, kind: str) -> np.ndarray:
    data = (rng.random((rows, cols), dtype=np.float32) - 0.5) * 0.04
    qtype = _TYPES[kind]
    if qtype == GGMLQuantizationType.F32:
        return data
    if qtype == GGMLQuantizationType.F16:
        return data.astype(np.float16)
    return gguf.quants.quantize(data, qtype)


def _metadata(w: gguf.GGUFWriter, shape: Shape) -> None:
    arch = shape.arch
    head_dim = shape.head_dim or shape.n_embd // shape.n_head
    w.add_name(shape.name)
    w.add_block_count(shape.n_layer)
    w.add_context_length(shape.ctx_train)
    w.add_embedding_length(shape.n_embd)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    if shape.head_dim is not None:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    if shape.n_swa:
        w.add_sliding_window(shape.n_swa)
    if shape.swa_pattern:
        w.add_uint32(f"{arch}.attention.sliding_window_pattern", shape.swa_pattern)
    for key, value in shape.extra.items():
        if isinstance(value, list):
            w.add_array(key, value)
        elif isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value)
        else:
            w.add_string(key, str(value))
    w.add_file_type(
        {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "q4_k": 15, "q6_k": 18, "iq3_s": 26}[
            shape.weights
        ]
    )
    tokens, scores, types = _tokens(shape.n_vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)


def write_gguf(path: Path, shape: Shape, *, seed: int = 0, sparse: bool = False) -> Path:
    """Write `shape` as a GGUF at `path` (its parent must exist).

    `sparse` writes the header only and extends the file to its full size without writing
    the weights: a 40 GB model costs a few MB of disk, for tests of the header reader.
    """
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), shape.arch)
    _metadata(w, shape)
    head_dim = shape.head_dim or shape.n_embd // shape.n_head
    kv_heads = shape.n_head_kv if isinstance(shape.n_head_kv, list) else [shape.n_head_kv]
    tensors: list[tuple[str, int, int, str]] = []  # name, rows, cols, type

    def norm(name: str, n: int) -> None:
        tensors.append((name, 1, n, "f32"))

    def mat(name: str, rows: int, cols: int) -> None:
        tensors.append((name, rows, cols, shape.weights))

    # token embeddings keep the file's weight type, as converters do for small models
    mat("token_embd.weight", shape.n_vocab, shape.n_embd)
    for il in range(shape.n_layer):
        n_kv = kv_heads[il] if il < len(kv_heads) else kv_heads[-1]
        norm(f"blk.{il}.attn_norm.weight", shape.n_embd)
        if n_kv == 0:  # a recurrent or short-convolution layer: no attention weights
            mat(f"blk.{il}.shortconv.in_proj.weight", 3 * shape.n_embd, shape.n_embd)
        else:
            mat(f"blk.{il}.attn_q.weight", head_dim * shape.n_head, shape.n_embd)
            mat(f"blk.{il}.attn_k.weight", head_dim * n_kv, shape.n_embd)
            mat(f"blk.{il}.attn_v.weight", head_dim * n_kv, shape.n_embd)
            mat(f"blk.{il}.attn_output.weight", shape.n_embd, head_dim * shape.n_head)
        norm(f"blk.{il}.ffn_norm.weight", shape.n_embd)
        mat(f"blk.{il}.ffn_gate.weight", shape.n_ff, shape.n_embd)
        mat(f"blk.{il}.ffn_up.weight", shape.n_ff, shape.n_embd)
        mat(f"blk.{il}.ffn_down.weight", shape.n_embd, shape.n_ff)
    norm("output_norm.weight", shape.n_embd)
    if not shape.tied:
        mat("output.weight", shape.n_vocab, shape.n_embd)

    if sparse:
        return _write_sparse(w, tensors)
    for name, rows, cols, kind in tensors:
        qtype = _TYPES[kind]
        if rows == 1:
            w.add_tensor(name, np.ones(cols, dtype=np.float32))
            continue
        plain = qtype in (GGMLQuantizationType.F32, GGMLQuantizationType.F16)
        w.add_tensor(name, _matrix(rng, rows, cols, kind), raw_dtype=None if plain else qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _write_sparse(w: gguf.GGUFWriter, tensors: list[tuple[str, int, int, str]]) -> Path:
    for name, rows, cols, kind in tensors:
        qtype = _TYPES[kind]
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        nbytes = rows * (cols // block) * size
        shape = (cols,) if rows == 1 else (rows, cols)
        w.add_tensor_info(name, shape, np.dtype(np.float32), nbytes, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    assert w.fout is not None
    handle = w.fout[0]
    align = w.data_alignment
    end = handle.tell()
    data = sum((nbytes + align - 1) // align * align for nbytes in _sizes(tensors))
    handle.truncate((end + align - 1) // align * align + data)
    w.close()
    return Path(handle.name)


def _sizes(tensors: list[tuple[str, int, int, str]]) -> list[int]:
    out = []
    for _name, rows, cols, kind in tensors:
        block, size = gguf.GGML_QUANT_SIZES[_TYPES[kind]]
        out.append(rows * (cols // block) * size)
    return out
