"""A model of the memory llama.cpp's `llama-server` allocates, per device.

Pure functions of `ModelFacts` and a `RunConfig`. The components follow llama.cpp's own memory
breakdown: model (weight buffers), context (KV cache and recurrent state), compute (the
scheduler's worst-case graph), output (logits, host) and a per-process overhead on each GPU
(CUDA context, cuBLAS, memory pool), which llama.cpp shows as "unaccounted".

Sources modelled (llama.cpp, late 2026): `llama_context` pads n_ctx to 256 and, without a
unified cache, gives each of n_seq streams PAD(n_ctx / n_seq, 256) cells; `llama_kv_cache`
holds K and V rows of `row_size(type, head_dim * n_head_kv(il))` per cell for every layer with
attention (K only with multi-head latent attention); the iSWA cache gives sliding-window
layers PAD(min(n_ctx, n_swa * (unified ? n_seq : 1) + n_ubatch), 256) cells per stream;
recurrent layers keep F32 r/s state per sequence; `load_tensors` offloads layers from
max(n_layer + 1 - ngl, 0), output first, keeps the token embeddings on the host and copies a
tied output head to the GPU.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reconciler.estimate.facts import ModelFacts
from reconciler.frozen import Frozen
from reconciler.gguf.ggml import row_size

__all__ = [
    "CACHE_TYPES",
    "DEFAULT_OVERHEAD_MIB",
    "DeviceMemory",
    "Estimate",
    "RunConfig",
    "estimate",
    "kv_cells",
]

MIB = 1024 * 1024
KV_PAD = 256
# ggml type ids of the KV cache types a desired file may name.
CACHE_TYPES = {
    "f32": 0,
    "f16": 1,
    "q4_0": 2,
    "q4_1": 3,
    "q5_0": 6,
    "q5_1": 7,
    "q8_0": 8,
    "iq4_nl": 20,
    "bf16": 30,
}
# CUDA context + cuBLAS handles + pool, per process and GPU: NVML's figure minus every buffer
# llama.cpp reports, 586-589 MiB in 12 runs on an H100 (driver 580, CUDA 13; see
# bench/results/gpu_h100.json). Override per run with RunConfig.overhead_mib.
DEFAULT_OVERHEAD_MIB = 588
# Unknown architectures: compute and context are scaled up by this much, and said so.
UNKNOWN_MARGIN = 1.25


def _pad(n: int, to: int) -> int:
    return (n + to - 1) // to * to


class RunConfig(Frozen):
    """How llama-server is started: the flags that decide its memory."""

    ctx: int = Field(4096, ge=1)
    parallel: int = Field(1, ge=1)
    kv_unified: bool = False
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    flash_attn: Literal["on", "off", "auto"] = "auto"
    ubatch: int = Field(512, ge=1)
    batch: int = Field(2048, ge=1)
    gpu_layers: int | Literal["all"] = "all"
    gpus: int = Field(1, ge=0, description="GPUs the server gets; 0 is a CPU-only build.")
    tensor_split: tuple[float, ...] | None = None
    swa_full: bool = False
    overhead_mib: int = DEFAULT_OVERHEAD_MIB


class DeviceMemory(Frozen):
    name: str
    model: int = 0
    context: int = 0
    compute: int = 0
    output: int = 0
    overhead: int = 0

    @property
    def total(self) -> int:
        return self.model + self.context + self.compute + self.output + self.overhead

    def mib(self) -> dict[str, float]:
        return {
            "model_mib": self.model / MIB,
            "context_mib": self.context / MIB,
            "compute_mib": self.compute / MIB,
            "output_mib": self.output / MIB,
            "overhead_mib": self.overhead / MIB,
            "total_mib": self.total / MIB,
        }


class Estimate(Frozen):
    devices: tuple[DeviceMemory, ...]
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return sum(d.total for d in self.devices)

    def device(self, name: str) -> DeviceMemory:
        return next(d for d in self.devices if d.name == name)


def kv_cells(facts: ModelFacts, cfg: RunConfig) -> tuple[int, int, int]:
    """(cells per stream for full-attention layers, for SWA layers, number of streams)."""
    n_ctx = _pad(cfg.ctx, KV_PAD)
    if cfg.kv_unified:
        streams, per_stream = 1, n_ctx
    else:
        streams, per_stream = cfg.parallel, _pad(n_ctx // cfg.parallel, KV_PAD)
    swa = per_stream
    if facts.n_swa and not cfg.swa_full:
        ubatch = min(cfg.ubatch, cfg.batch, n_ctx)
        window = facts.n_swa * (cfg.parallel if cfg.kv_unified else 1) + ubatch
        swa = _pad(min(per_stream, window), KV_PAD)
    return per_stream, swa, streams


def _layer_context(facts: ModelFacts, cfg: RunConfig) -> list[int]:
    """Bytes of KV cache or recurrent state held for each layer (a row's size is worked out
    once for each KV head count: the hint search calls this hundreds of times)."""
    full, swa, streams = kv_cells(facts, cfg)
    tk, tv = CACHE_TYPES[cfg.cache_type_k], CACHE_TYPES[cfg.cache_type_v]
    recurrent = 4 * (facts.recurrent_r + facts.recurrent_s) * max(cfg.parallel, 1)
    rows: dict[int, tuple[int, int]] = {}
    out = []
    for layer in facts.layers:
        if layer.recurrent:
            out.append(recurrent)
            continue
        n_kv = layer.n_head_kv
        if n_kv == 0:
            out.append(0)
            continue
        row = rows.get(n_kv)
        if row is None:
            k = row_size(tk, facts.head_dim_k * n_kv)
            v = 0 if facts.mla else row_size(tv, facts.head_dim_v * n_kv)
            row = rows[n_kv] = (k, v)
        cells = (swa if layer.swa else full) * streams
        out.append((row[0] + row[1]) * cells)
    return out


def _flash(cfg: RunConfig) -> bool:
    return cfg.flash_attn != "off"  # auto resolves to on wherever the backend supports it


def _tokens(facts: ModelFacts, cfg: RunConfig) -> int:
    """Tokens in the worst-case graph: min(n_ctx, n_ubatch)."""
    full, _swa, streams = kv_cells(facts, cfg)
    return min(cfg.ubatch, cfg.batch, full * streams)


def _mask(facts: ModelFacts, cfg: RunConfig, layers: list[int]) -> int:
    """The KQ masks: F16 with flash attention, F32 without; one more for SWA layers."""
    full, swa, _streams = kv_cells(facts, cfg)
    t = _tokens(facts, cfg)
    per = 2 if _flash(cfg) else 4
    size = full * t * per
    if any(facts.layers[i].swa for i in layers):
        size += swa * t * per
    return size


def _compute(
    facts: ModelFacts, cfg: RunConfig, layers: list[int], *, head: bool, cuda: bool
) -> int:
    """The worst-case graph's buffer on a device holding `layers` (and the head if `head`).

    Measured structure (bench/results/estimate.md, gpu_h100.json): the masks live through the
    whole graph; on top of them the peak is the larger of the attention step (Q, K, V, the
    output projection and, without flash attention, the KQ matrix of n_kv x tokens x heads)
    and the feed-forward step (gate, up and their product: 3 x n_ff per token, plus the
    residual stream: 4 x n_embd on CUDA, 5 on the CPU).
    """
    if not layers and not head:
        return 0
    full, swa, _streams = kv_cells(facts, cfg)
    t = _tokens(facts, cfg)
    f32 = 4
    e = facts.n_embd
    chosen = [facts.layers[i] for i in layers] or list(facts.layers[-1:])
    heads = max(layer.n_head for layer in chosen)
    n_ff = max(layer.n_ff for layer in chosen)
    q = facts.head_dim_k * heads
    kv = facts.head_dim_k * max(layer.n_head_kv for layer in chosen)
    n_kv = full if any(not layer.swa for layer in chosen) else swa
    attn = t * f32 * (3 * e + 3 * q + 2 * kv)
    if not _flash(cfg):
        attn += n_kv * t * heads * f32
    ffn = t * f32 * (3 * n_ff + (4 if cuda else 5) * e)
    logits = facts.n_vocab * cfg.parallel * f32 + t * f32 * e if head else 0
    peak = max(attn if layers else 0, ffn if layers else 0, logits)
    return _mask(facts, cfg, layers) + peak


def _gpu_compute(
    facts: ModelFacts, cfg: RunConfig, layers: list[int], host_layers: list[int], *, head: bool
) -> int:
    if not layers and not head:
        return 0
    size = _compute(facts, cfg, layers, head=head, cuda=True)
    if host_layers:
        # Op offload: large batches run host layers' matrix products on the GPU, which
        # holds a copy of the weight being multiplied.
        size += max(facts.layers[i].largest_tensor for i in host_layers)
    quantized = cfg.cache_type_k != "f16" or cfg.cache_type_v != "f16"
    if _flash(cfg) and quantized and layers:
        # CUDA's flash attention converts a quantized cache to F16 scratch: measured about
        # one layer's K and V of one stream with grouped heads, three without.
        full, _swa, _streams = kv_cells(facts, cfg)
        kv_dim = max(facts.head_dim_k * facts.layers[i].n_head_kv for i in layers)
        mha = any(facts.layers[i].n_head == facts.layers[i].n_head_kv for i in layers)
        size += (3 if mha else 1) * 2 * full * kv_dim * 2
    return size


def _split_layers(facts: ModelFacts, cfg: RunConfig) -> tuple[list[list[int]], int, list[int]]:
    """Which layers each GPU holds, the GPU of the output head (-1: host), host layers."""
    n_layer = facts.n_layer
    if cfg.gpus == 0:
        return [], -1, list(range(n_layer))
    ngl = n_layer + 1 if cfg.gpu_layers == "all" else min(cfg.gpu_layers, n_layer + 1)
    start = max(n_layer + 1 - ngl, 0)
    split = cfg.tensor_split or tuple(1.0 for _ in range(cfg.gpus))
    total = sum(split) or 1.0
    bounds, acc = [], 0.0
    for share in split:
        acc += share / total
        bounds.append(acc)
    per_gpu: list[list[int]] = [[] for _ in range(cfg.gpus)]
    head_gpu = -1
    if cfg.gpus == 1:
        per_gpu[0] = list(range(start, n_layer))
        head_gpu = 0 if start <= n_layer else -1  # no layer offloaded: the head stays too
    else:
        last = cfg.gpus - 1
        for il in range(start, n_layer + 1):
            frac = (il - start) / max(ngl, 1)
            gpu = next((g for g, b in enumerate(bounds) if frac < b), last)
            if il == n_layer:
                head_gpu = gpu
            else:
                per_gpu[gpu].append(il)
    return per_gpu, head_gpu, list(range(min(start, n_layer)))


def estimate(facts: ModelFacts, cfg: RunConfig) -> Estimate:
    """Per-device memory of llama-server running this model with this configuration."""
    context = _layer_context(facts, cfg)
    per_gpu, head_gpu, host_layers = _split_layers(facts, cfg)
    head_on_gpu = head_gpu >= 0
    margin = 1.0 if facts.known else UNKNOWN_MARGIN
    notes: list[str] = []
    if not facts.known:
        notes.append(
            f"architecture {facts.architecture!r} is not modelled exactly: context and compute "
            f"are raised by {round((UNKNOWN_MARGIN - 1) * 100)} % to stay on the safe side"
        )
    output = facts.n_vocab * cfg.parallel * 4  # logits of one token per sequence, host

    host_model = facts.token_embd_bytes + facts.other_bytes
    host_model += sum(facts.layers[i].bytes_host for i in host_layers)
    if not head_on_gpu:
        host_model += facts.output_norm_host + (0 if facts.tied_output else facts.head_bytes_host)
    host_context = sum(context[i] for i in host_layers)
    devices = []
    for g, layers in enumerate(per_gpu):
        has_head = g == head_gpu
        model = sum(facts.layers[i].bytes_cuda for i in layers)
        if has_head:
            model += facts.output_norm_cuda + facts.head_bytes_cuda
        devices.append(
            DeviceMemory(
                name=f"cuda{g}",
                model=model,
                context=int(sum(context[i] for i in layers) * margin),
                compute=int(_gpu_compute(facts, cfg, layers, host_layers, head=has_head) * margin),
                overhead=cfg.overhead_mib * MIB,
            )
        )
    if per_gpu:
        # With a GPU the host buffer holds the inputs (embeddings, masks) the GPUs read from.
        host_compute = _mask(facts, cfg, list(range(facts.n_layer)))
        host_compute += _tokens(facts, cfg) * 4 * 4 * facts.n_embd
    else:
        host_compute = _compute(facts, cfg, host_layers, head=True, cuda=False)
    host = DeviceMemory(
        name="host",
        model=host_model,
        context=int(host_context * margin),
        compute=int(host_compute * margin),
        output=output,
    )
    return Estimate(devices=(host, *devices), notes=tuple(notes))
