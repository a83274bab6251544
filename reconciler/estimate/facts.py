"""What the memory model needs to know about a model, distilled from its GGUF header.

`ModelFacts` is small (a few KiB even for a 70B model), frozen, and serialisable: it is what
the lock file stores so that CI can estimate without the weights. `facts_from_header` is pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from reconciler.frozen import Frozen
from reconciler.gguf.ggml import BF16, F16, F32, row_size

__all__ = [
    "KNOWN_ARCHS",
    "LayerFacts",
    "ModelFacts",
    "facts_from_header",
    "row_size",
]

CUDA_ROW_PADDING = 512  # ggml-cuda MATRIX_ROW_PADDING
CUDA_ALIGN = 128
CPU_ALIGN = 32

# Architectures whose attention layout we model exactly (llama-style transformers and their
# sliding-window, MLA and recurrent relatives). Anything else is estimated conservatively.
KNOWN_ARCHS = frozenset(
    {
        "llama",
        "llama4",
        "mistral3",
        "qwen2",
        "qwen2moe",
        "qwen3",
        "qwen3moe",
        "phi3",
        "gemma",
        "gemma2",
        "gemma3",
        "starcoder2",
        "granite",
        "granitemoe",
        "olmo",
        "olmo2",
        "mixtral",
        "deepseek",
        "deepseek2",
        "command-r",
        "cohere2",
        "internlm2",
        "exaone",
        "gpt-oss",
        "glm4",
        "glm4moe",
        "smollm3",
        "ernie4_5",
        "mamba",
        "mamba2",
        "rwkv6",
        "rwkv7",
        "lfm2",
        "jamba",
        "falcon-h1",
        "nomic-bert",
        "bert",
    }
)
# Sliding-window pattern per architecture: every n-th layer uses full attention.
SWA_PATTERN = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2}
_LAYER = re.compile(r"^blk\.(\d+)\.")


def _pad(n: int, to: int) -> int:
    return (n + to - 1) // to * to


class LayerFacts(Frozen):
    """One repeating block: its weights and what its memory (KV or recurrent state) holds."""

    bytes_host: int = Field(description="Weight bytes in a CPU buffer.")
    bytes_cuda: int = Field(description="Weight bytes in a CUDA buffer (row padding, align).")
    n_head: int
    n_head_kv: int = Field(description="0 for a layer without KV cache (recurrent, shortconv).")
    swa: bool = False
    recurrent: bool = False
    n_ff: int = 0
    largest_tensor: int = Field(0, description="Bytes of the largest weight (op offload copy).")


class ModelFacts(Frozen):
    architecture: str
    known: bool = Field(description="False: an unknown architecture, estimated conservatively.")
    n_embd: int
    n_vocab: int
    n_ctx_train: int
    head_dim_k: int
    head_dim_v: int
    n_swa: int = 0
    mla: bool = Field(False, description="Multi-head latent attention: the cache holds K only.")
    recurrent_r: int = Field(0, description="F32 elements of conv/shift state per layer per seq.")
    recurrent_s: int = Field(0, description="F32 elements of SSM/WKV state per layer per seq.")
    layers: tuple[LayerFacts, ...]
    token_embd_bytes: int = Field(description="Input embeddings: always in host memory.")
    output_norm_host: int
    output_norm_cuda: int
    head_bytes_host: int = Field(description="The output head (a copy of token_embd if tied).")
    head_bytes_cuda: int
    tied_output: bool = Field(description="No output.weight: the token embeddings are reused.")
    other_bytes: int = Field(0, description="Tensors outside the blocks, e.g. rope factors.")
    file_size: int
    fingerprint: str

    @property
    def n_layer(self) -> int:
        return len(self.layers)

    @property
    def weight_bytes(self) -> int:
        layers = sum(layer.bytes_host for layer in self.layers)
        head = 0 if self.tied_output else self.head_bytes_host
        return layers + self.token_embd_bytes + self.output_norm_host + head + self.other_bytes


def _alloc(type_: int, shape: Sequence[int], nbytes: int, *, cuda: bool) -> int:
    """Bytes one tensor takes in a buffer: CUDA pads quantized rows, both align."""
    size = nbytes
    quantized = type_ not in (F32, F16, BF16)
    if cuda and quantized and shape[0] % CUDA_ROW_PADDING:
        size += row_size(type_, CUDA_ROW_PADDING - shape[0] % CUDA_ROW_PADDING)
    return _pad(size, CUDA_ALIGN if cuda else CPU_ALIGN)


def _per_layer(value: Any, n_layer: int, default: int) -> list[int]:
    if isinstance(value, list):
        out = [int(v) for v in value[:n_layer]]
        return out + [out[-1] if out else default] * (n_layer - len(out))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [int(value)] * n_layer
    return [default] * n_layer


def _swa_layers(arch: str, meta: Mapping[str, Any], n_layer: int, n_swa: int) -> list[bool]:
    if n_swa <= 0:
        return [False] * n_layer
    pattern = meta.get(f"{arch}.attention.sliding_window_pattern")
    if isinstance(pattern, list):
        return [bool(v) for v in pattern[:n_layer]] + [False] * (n_layer - len(pattern))
    every = int(pattern) if isinstance(pattern, int) else SWA_PATTERN.get(arch, 0)
    # llama.cpp set_swa_pattern(n): layer il uses SWA unless il % n == n - 1.
    return (
        [every == 0 or il % every < every - 1 for il in range(n_layer)]
        if every
        else ([True] * n_layer)
    )


def _weights(
    tensors: Sequence[tuple[str, tuple[int, ...], int, int]], n_layer: int
) -> tuple[list[int], list[int], list[int], int, int, int, int, int, int, bool]:
    """Per-layer weight bytes (host, CUDA) and the tensors outside the blocks."""
    host = [0] * n_layer
    cuda = [0] * n_layer
    largest = [0] * n_layer
    embd = norm_host = norm_cuda = head_host = head_cuda = other = 0
    tied = True
    for name, shape, type_, nbytes in tensors:
        match = _LAYER.match(name)
        h = _alloc(type_, shape, nbytes, cuda=False)
        c = _alloc(type_, shape, nbytes, cuda=True)
        if match is not None and int(match[1]) < n_layer:
            host[int(match[1])] += h
            cuda[int(match[1])] += c
            largest[int(match[1])] = max(largest[int(match[1])], h)
        elif name == "token_embd.weight":
            embd += h
            if tied:
                head_host, head_cuda = h, c
        elif name == "output.weight":
            head_host, head_cuda, tied = h, c, False
        elif name.startswith("output_norm."):
            norm_host += h
            norm_cuda += c
        else:
            other += h

    return host, cuda, largest, embd, norm_host, norm_cuda, head_host, head_cuda, other, tied


def facts_from_header(
    metadata: Mapping[str, Any],
    tensors: Sequence[tuple[str, tuple[int, ...], int, int]],
    file_size: int,
    fingerprint: str,
) -> ModelFacts:
    """Distil a GGUF header (metadata, tensors as (name, shape, type, nbytes)) to ModelFacts."""
    arch = str(metadata.get("general.architecture", "unknown"))

    def get(key: str, default: Any = None) -> Any:
        return metadata.get(f"{arch}.{key}", default)

    n_layer = int(get("block_count", 0))
    n_embd = int(get("embedding_length", 0))
    heads = _per_layer(get("attention.head_count"), n_layer, 1)
    heads_kv = (
        _per_layer(get("attention.head_count_kv"), n_layer, 0)
        if get("attention.head_count_kv") is not None
        else list(heads)
    )
    n_ff = _per_layer(get("feed_forward_length"), n_layer, 4 * n_embd)
    first_heads = next((h for h in heads if h), 1)
    head_k = int(get("attention.key_length", n_embd // max(first_heads, 1)))
    head_v = int(get("attention.value_length", head_k))
    n_swa = int(get("attention.sliding_window", 0) or 0)
    swa = _swa_layers(arch, metadata, n_layer, n_swa)

    tokens = metadata.get("tokenizer.ggml.tokens")
    n_vocab = len(tokens) if isinstance(tokens, list) else int(getattr(tokens, "count", 0))
    n_vocab = n_vocab or int(get("vocab_size", 0))

    # Recurrent state sizes (F32 elements per layer per sequence), per llama.cpp's hparams.
    d_conv, d_inner = int(get("ssm.conv_kernel", 0)), int(get("ssm.inner_size", 0))
    d_state, n_group = int(get("ssm.state_size", 0)), int(get("ssm.group_count", 0))
    rec_r = rec_s = 0
    if d_inner:
        rec_r = (d_conv - 1) * (d_inner + 2 * n_group * d_state) if d_conv else 0
        rec_s = d_state * d_inner
    elif get("wkv.head_size"):
        rec_r = int(get("token_shift_count", 2)) * n_embd
        rec_s = n_embd * int(get("wkv.head_size"))
    elif get("shortconv.l_cache"):
        rec_r = n_embd * (int(get("shortconv.l_cache")) - 1)
    pure_recurrent = arch in ("mamba", "mamba2", "rwkv6", "rwkv7")
    recurrent = [
        pure_recurrent or (heads_kv[il] == 0 and (rec_r or rec_s) > 0) for il in range(n_layer)
    ]

    host, cuda, largest, embd, norm_host, norm_cuda, head_host, head_cuda, other, tied = _weights(
        tensors, n_layer
    )

    layers = tuple(
        LayerFacts(
            bytes_host=host[il],
            bytes_cuda=cuda[il],
            n_head=heads[il],
            n_head_kv=0 if recurrent[il] else heads_kv[il],
            swa=swa[il],
            recurrent=recurrent[il],
            n_ff=n_ff[il],
            largest_tensor=largest[il],
        )
        for il in range(n_layer)
    )
    return ModelFacts(
        architecture=arch,
        known=arch in KNOWN_ARCHS and n_layer > 0 and n_embd > 0,
        n_embd=n_embd,
        n_vocab=n_vocab,
        n_ctx_train=int(get("context_length", 0)),
        head_dim_k=head_k,
        head_dim_v=head_v,
        n_swa=n_swa,
        mla=bool(get("attention.key_length_mla")) and bool(get("attention.value_length_mla")),
        recurrent_r=rec_r,
        recurrent_s=rec_s,
        layers=layers,
        token_embd_bytes=embd,
        output_norm_host=norm_host,
        output_norm_cuda=norm_cuda,
        head_bytes_host=head_host,
        head_bytes_cuda=head_cuda,
        tied_output=tied,
        other_bytes=other,
        file_size=file_size,
        fingerprint=fingerprint,
    )
