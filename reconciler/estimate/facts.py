"""What the memory model needs to know about a model, distilled from its GGUF header.

`ModelFacts` is small (a few KiB even for a 70B model), frozen, and serialisable: it is what
the lock file stores so that CI can estimate without the weights. `facts_from_header` is pure.

Facts are validated in one place, their own fields' bounds (`LIMITS`), whether they come
from a GGUF header or a lock file, so that the memory model only ever sees sane numbers: at
least one and at most 512 layers (llama.cpp's own LLAMA_MAX_LAYERS), no negative sizes, and
widths, heads and counts a thousand times beyond the largest published models at most.
Metadata of the wrong type (a list where a number belongs, "1e9" as a string, NaN) is a
`FactsError` naming the key, before anything is sized by it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from reconciler.estimate.metadata import (
    LIMITS,
    MAX_LAYERS,
    FactsError,
    Meta,
    layer_count,
    recurrent_state,
    swa_layers,
    vocab_size,
)
from reconciler.frozen import Frozen
from reconciler.gguf.ggml import BF16, F16, F32, row_size

__all__ = [
    "KNOWN_ARCHS",
    "LIMITS",
    "MAX_LAYERS",
    "FactsError",
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
_LAYER = re.compile(r"^blk\.(\d{1,9})\.")  # a longer index is no layer of ours
_BYTES = LIMITS["bytes"]


def _pad(n: int, to: int) -> int:
    return (n + to - 1) // to * to


class LayerFacts(Frozen):
    """One repeating block: its weights and what its memory (KV or recurrent state) holds."""

    bytes_host: int = Field(ge=0, le=_BYTES, description="Weight bytes in a CPU buffer.")
    bytes_cuda: int = Field(
        ge=0, le=_BYTES, description="Weight bytes in a CUDA buffer (row padding, align)."
    )
    n_head: int = Field(ge=0, le=LIMITS["heads"])
    n_head_kv: int = Field(
        ge=0,
        le=LIMITS["heads"],
        description="0 for a layer without KV cache (recurrent, shortconv).",
    )
    swa: bool = False
    recurrent: bool = False
    n_ff: int = Field(0, ge=0, le=LIMITS["width"])
    largest_tensor: int = Field(
        0, ge=0, le=_BYTES, description="Bytes of the largest weight (op offload copy)."
    )


class ModelFacts(Frozen):
    architecture: str = Field(min_length=1, max_length=64)
    known: bool = Field(description="False: an unknown architecture, estimated conservatively.")
    n_embd: int = Field(ge=1, le=LIMITS["width"])
    n_vocab: int = Field(ge=0, le=LIMITS["vocab"])
    n_ctx_train: int = Field(ge=0, le=LIMITS["tokens"])
    head_dim_k: int = Field(ge=0, le=LIMITS["width"])
    head_dim_v: int = Field(ge=0, le=LIMITS["width"])
    n_swa: int = Field(0, ge=0, le=LIMITS["tokens"])
    mla: bool = Field(False, description="Multi-head latent attention: the cache holds K only.")
    recurrent_r: int = Field(
        0, ge=0, le=LIMITS["state"], description="F32 elements of conv/shift state per layer."
    )
    recurrent_s: int = Field(
        0, ge=0, le=LIMITS["state"], description="F32 elements of SSM/WKV state per layer."
    )
    layers: tuple[LayerFacts, ...] = Field(min_length=1, max_length=MAX_LAYERS)
    token_embd_bytes: int = Field(
        ge=0, le=_BYTES, description="Input embeddings: always in host memory."
    )
    output_norm_host: int = Field(ge=0, le=_BYTES)
    output_norm_cuda: int = Field(ge=0, le=_BYTES)
    head_bytes_host: int = Field(
        ge=0, le=_BYTES, description="The output head (a copy of token_embd if tied)."
    )
    head_bytes_cuda: int = Field(ge=0, le=_BYTES)
    tied_output: bool = Field(description="No output.weight: the token embeddings are reused.")
    other_bytes: int = Field(
        0, ge=0, le=_BYTES, description="Tensors outside the blocks, e.g. rope factors."
    )
    file_size: int = Field(ge=1, le=_BYTES)
    fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("layers", mode="before")
    @classmethod
    def _layer_count(cls, value: Any) -> Any:
        """Counted before each layer is validated: 5,000 layers are refused at once."""
        if isinstance(value, list | tuple) and len(value) > MAX_LAYERS:
            raise PydanticCustomError(
                "value",
                "at most {limit} layers (llama.cpp's limit), not {count}; the entry is corrupt",
                {"limit": MAX_LAYERS, "count": len(value)},
            )
        return value

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
    """Distil a GGUF header (metadata, tensors as (name, shape, type, nbytes)) to ModelFacts;
    metadata the memory model cannot use is a `FactsError` naming the key."""
    meta = Meta(metadata)
    arch = meta.arch
    width, heads_limit = LIMITS["width"], LIMITS["heads"]
    n_layer = layer_count(meta, len(tensors))
    n_embd = meta.count("embedding_length", width, None)
    if n_embd == 0:
        raise FactsError(f"{arch}.embedding_length is 0; the file is corrupt")
    heads = meta.per_layer("attention.head_count", n_layer, 1, heads_limit)
    heads_kv = meta.per_layer("attention.head_count_kv", n_layer, -1, heads_limit)
    heads_kv = [h if kv < 0 else kv for h, kv in zip(heads, heads_kv, strict=True)]
    n_ff = meta.per_layer("feed_forward_length", n_layer, min(4 * n_embd, width), width)
    first_heads = next((h for h in heads if h), 1)
    head_k = meta.count("attention.key_length", width, n_embd // first_heads)
    head_v = meta.count("attention.value_length", width, head_k)
    n_swa = meta.count("attention.sliding_window", LIMITS["tokens"])
    swa = swa_layers(meta, n_layer, n_swa)
    n_vocab = vocab_size(meta)
    rec_r, rec_s = recurrent_state(meta, n_embd)
    pure_recurrent = arch in ("mamba", "mamba2", "rwkv6", "rwkv7")
    recurrent = [
        pure_recurrent or (heads_kv[il] == 0 and (rec_r or rec_s) > 0) for il in range(n_layer)
    ]

    host, cuda, largest, embd, norm_host, norm_cuda, head_host, head_cuda, other, tied = _weights(
        tensors, n_layer
    )

    try:
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
            known=arch in KNOWN_ARCHS,
            n_embd=n_embd,
            n_vocab=n_vocab,
            n_ctx_train=meta.count("context_length", LIMITS["tokens"]),
            head_dim_k=head_k,
            head_dim_v=head_v,
            n_swa=n_swa,
            mla=bool(meta.count("attention.key_length_mla", width))
            and bool(meta.count("attention.value_length_mla", width)),
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
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise FactsError(f"{where}: {first['msg']}; the file is corrupt") from None
