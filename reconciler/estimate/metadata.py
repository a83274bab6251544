"""Reading a GGUF header's metadata for the memory model: typed, bounded, one message per key.

GGUF metadata is whatever a converter (or a corrupt download) wrote: a list where a number
belongs, "1e9" as a string, NaN, a block count of 2^40 in a 16 KB file. Every key the
memory model uses is read here as a whole number within `LIMITS` (at most `MAX_LAYERS`
layers, llama.cpp's own limit), before anything is sized by it; anything else is a
`FactsError` naming the key, to which the caller adds the file's name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from reconciler.errors import ReconcileError
from reconciler.gguf.reader import ArrayInfo

__all__ = [
    "LIMITS",
    "MAX_LAYERS",
    "SWA_PATTERN",
    "FactsError",
    "Meta",
    "layer_count",
    "recurrent_state",
    "swa_layers",
    "vocab_size",
    "whole",
]

# Sliding-window pattern per architecture: every n-th layer uses full attention.
SWA_PATTERN = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2}
MAX_LAYERS = 512  # llama.cpp's LLAMA_MAX_LAYERS: it refuses a model with more
# The most each kind of number may be: far beyond any published model (the widest have
# n_embd 16,384, 128 heads, vocabularies of 262k, contexts of 10M tokens), low enough that
# the memory model's arithmetic stays small and quick.
LIMITS = {
    "bytes": 1 << 50,  # 1 PiB
    "width": 1 << 20,  # n_embd, n_ff, head dimensions
    "heads": 1 << 14,
    "vocab": 1 << 24,
    "tokens": 1 << 30,  # trained context, sliding window
    "state": 1 << 32,  # recurrent state elements per layer
}


class FactsError(ReconcileError):
    """GGUF metadata the memory model cannot use; the caller adds the file's name."""


def _show(value: Any) -> str:
    """A metadata value as a message shows it: short, its kind plain."""
    if isinstance(value, list):
        return f"a list of {_items(len(value))}" if value else "an empty list"
    if isinstance(value, ArrayInfo):  # a long array, kept as its length
        return f"an array of {_items(value.count)}"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _items(n: int) -> str:
    return f"{n} item" + ("" if n == 1 else "s")


class Meta:
    """Typed, bounded reads of one architecture's metadata keys."""

    def __init__(self, metadata: Mapping[str, Any]) -> None:
        self.metadata = metadata
        arch = metadata.get("general.architecture", "unknown")
        if not isinstance(arch, str) or not 1 <= len(arch) <= 64:
            raise FactsError(
                f"general.architecture is {_show(arch)}, not an architecture's name; "
                "the file is corrupt"
            )
        self.arch = arch

    def raw(self, key: str) -> Any:
        return self.metadata.get(f"{self.arch}.{key}")

    def count(self, key: str, limit: int, default: int | None = 0) -> int:
        """A whole number 0..`limit`; `default` when absent (None: the key is required)."""
        name = f"{self.arch}.{key}"
        value = self.metadata.get(name)
        if value is None:
            if default is None:
                raise FactsError(
                    f"has no {name}, which llama.cpp requires; the file is incomplete or not a "
                    "model (convert it again with current llama.cpp)"
                )
            return default
        return whole(name, value, limit)

    def per_layer(self, key: str, n_layer: int, default: int, limit: int) -> list[int]:
        """One value per layer: a number for all, or a list (a shorter one repeats its last)."""
        name = f"{self.arch}.{key}"
        value = self.metadata.get(name)
        if value is None:
            return [default] * n_layer
        if not isinstance(value, list):
            if isinstance(value, ArrayInfo):
                raise FactsError(
                    f"{name} is {_show(value)}, more than one per layer (at most "
                    f"{MAX_LAYERS} layers); the file is corrupt"
                )
            return [whole(name, value, limit)] * n_layer
        if not value:
            raise FactsError(
                f"{name} is an empty list, not one value per layer; the file is corrupt"
            )
        out = [whole(f"{name}[{i}]", v, limit) for i, v in enumerate(value[:n_layer])]
        return out + [out[-1]] * (n_layer - len(out))


def whole(name: str, value: Any, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FactsError(f"{name} is {_show(value)}, not a whole number; the file is corrupt")
    if not 0 <= value <= limit:
        raise FactsError(
            f"{name} is {value}, outside 0 to {limit}; the file is corrupt or not a model "
            "llama.cpp can load"
        )
    return value


def swa_layers(meta: Meta, n_layer: int, n_swa: int) -> list[bool]:
    if n_swa <= 0:
        return [False] * n_layer
    pattern = meta.raw("attention.sliding_window_pattern")
    if isinstance(pattern, list):
        name = f"{meta.arch}.attention.sliding_window_pattern"
        flags = [
            v if isinstance(v, bool) else bool(whole(f"{name}[{i}]", v, 1))
            for i, v in enumerate(pattern[:n_layer])
        ]
        return flags + [False] * (n_layer - len(flags))
    every = (
        meta.count("attention.sliding_window_pattern", MAX_LAYERS)
        if pattern is not None
        else SWA_PATTERN.get(meta.arch, 0)
    )
    # llama.cpp set_swa_pattern(n): layer il uses SWA unless il % n == n - 1.
    return (
        [every == 0 or il % every < every - 1 for il in range(n_layer)]
        if every
        else ([True] * n_layer)
    )


def layer_count(meta: Meta, n_tensors: int) -> int:
    n_layer = meta.count("block_count", 1 << 62, None)
    if not 1 <= n_layer <= MAX_LAYERS:
        raise FactsError(
            f"{meta.arch}.block_count is {n_layer}; a model has 1 to {MAX_LAYERS} layers "
            "(llama.cpp's limit): the file is corrupt"
        )
    if n_layer > n_tensors:
        raise FactsError(
            f"{meta.arch}.block_count is {n_layer} but the file has only {n_tensors} tensors "
            "(each layer has at least one): the file is corrupt"
        )
    return n_layer


def recurrent_state(meta: Meta, n_embd: int) -> tuple[int, int]:
    """Recurrent state sizes (F32 elements per layer per sequence), per llama.cpp's hparams."""
    width, state = LIMITS["width"], LIMITS["state"]
    d_conv, d_inner = meta.count("ssm.conv_kernel", width), meta.count("ssm.inner_size", width)
    d_state, n_group = meta.count("ssm.state_size", width), meta.count("ssm.group_count", width)
    rec_r = rec_s = 0
    if d_inner:
        rec_r = (d_conv - 1) * (d_inner + 2 * n_group * d_state) if d_conv else 0
        rec_s = d_state * d_inner
    elif meta.count("wkv.head_size", width):
        rec_r = meta.count("token_shift_count", width, 2) * n_embd
        rec_s = n_embd * meta.count("wkv.head_size", width)
    elif meta.count("shortconv.l_cache", width):
        rec_r = n_embd * (meta.count("shortconv.l_cache", width) - 1)
    if rec_r > state or rec_s > state:
        raise FactsError(
            f"{meta.arch}'s recurrent state of {max(rec_r, rec_s)} elements per layer is more "
            f"than {state}: the file is corrupt"
        )
    return rec_r, rec_s


def vocab_size(meta: Meta) -> int:
    tokens = meta.metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, list):
        n_vocab = len(tokens)
    elif isinstance(tokens, ArrayInfo):
        n_vocab = tokens.count
    elif tokens is None:
        n_vocab = 0
    else:
        raise FactsError(
            f"tokenizer.ggml.tokens is {_show(tokens)}, not a list of tokens; the file is corrupt"
        )
    return whole("tokenizer.ggml.tokens", n_vocab, LIMITS["vocab"]) or meta.count(
        "vocab_size", LIMITS["vocab"]
    )
