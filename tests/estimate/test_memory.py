"""Each branch of the memory model, on GGUF headers written for the case.

Where llama.cpp printed the figure, test_against_llamacpp.py pins it; here the expected
numbers are llama.cpp's formulas worked by hand (the comments give the arithmetic).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from reconciler.estimate.facts import ModelFacts
from reconciler.estimate.memory import MIB, RunConfig, estimate, kv_cells
from reconciler.lockfile import facts_from_file
from tests.ggufs import SHAPES, Shape, write_gguf

BASE = Shape("base", n_layer=4, n_embd=512, n_head=8, n_head_kv=2, n_ff=1024, n_vocab=1000)


def facts_of(tmp_path: Path, shape: Shape) -> ModelFacts:
    return facts_from_file(write_gguf(tmp_path / f"{shape.name}.gguf", shape, sparse=True))


def test_ctx_is_padded_to_256_and_split_into_streams(tmp_path: Path) -> None:
    f = facts_of(tmp_path, BASE)
    assert kv_cells(f, RunConfig(ctx=3000)) == (3072, 3072, 1)
    assert kv_cells(f, RunConfig(ctx=8192, parallel=3)) == (2816, 2816, 3)  # PAD(8192/3)
    assert kv_cells(f, RunConfig(ctx=8192, parallel=3, kv_unified=True)) == (8192, 8192, 1)


@pytest.mark.parametrize(
    ("cache", "bytes_per_row"),
    [("f16", 128 * 2), ("q8_0", 4 * 34), ("q4_0", 4 * 18), ("q5_1", 4 * 24), ("iq4_nl", 4 * 18)],
)
def test_kv_bytes_per_cache_type(tmp_path: Path, cache: str, bytes_per_row: int) -> None:
    # GQA: 2 KV heads x 64 = 128 values per row for K and for V, 4 layers, 4096 cells.
    f = facts_of(tmp_path, BASE)
    cfg = RunConfig(ctx=4096, cache_type_k=cache, cache_type_v=cache, gpus=0)
    assert estimate(f, cfg).device("host").context == 2 * 4 * 4096 * bytes_per_row


def test_sliding_window_layers_get_a_window_sized_cache(tmp_path: Path) -> None:
    # gemma3: every 6th layer is global; the others hold PAD(n_swa + ubatch, 256) cells.
    shape = dataclasses.replace(BASE, name="g3", arch="gemma3", n_layer=12, n_swa=1024)
    f = facts_of(tmp_path, shape)
    assert [layer.swa for layer in f.layers] == [True] * 5 + [False] + [True] * 5 + [False]
    cfg = RunConfig(ctx=32768, gpus=0)
    row = 128 * 2 * 2  # K + V, f16
    expect = 2 * 32768 * row + 10 * (1024 + 512) * row
    assert estimate(f, cfg).device("host").context == expect
    full = estimate(f, cfg.model_copy(update={"swa_full": True})).device("host").context
    assert full == 12 * 32768 * row


def test_swa_pattern_from_metadata_and_gemma2(tmp_path: Path) -> None:
    g2 = facts_of(tmp_path, dataclasses.replace(BASE, name="g2", arch="gemma2", n_swa=4096))
    assert [layer.swa for layer in g2.layers] == [True, False, True, False]
    shape = dataclasses.replace(BASE, name="p3", arch="llama", n_swa=512, swa_pattern=3)
    assert [layer.swa for layer in facts_of(tmp_path, shape).layers] == [True, True, False, True]


def test_mla_caches_k_only(tmp_path: Path) -> None:
    # DeepSeek MLA: K rows of kv_lora_rank + rope (576), one KV head, no V.
    mla = {"deepseek2.attention.key_length_mla": 192, "deepseek2.attention.value_length_mla": 128}
    shape = dataclasses.replace(
        BASE, name="ds", arch="deepseek2", n_head_kv=1, head_dim=576, extra=mla
    )
    f = facts_of(tmp_path, shape)
    assert f.mla
    host = estimate(f, RunConfig(ctx=4096, gpus=0)).device("host")
    assert host.context == 4 * 4096 * 576 * 2


def test_mamba_state_per_sequence(tmp_path: Path) -> None:
    # r = (d_conv - 1) * (d_inner + 2 * n_group * d_state), s = d_state * d_inner, F32.
    meta = {
        "mamba2.ssm.conv_kernel": 4,
        "mamba2.ssm.inner_size": 1024,
        "mamba2.ssm.state_size": 128,
        "mamba2.ssm.group_count": 1,
    }
    f = facts_of(tmp_path, dataclasses.replace(BASE, name="m2", arch="mamba2", extra=meta))
    assert all(layer.recurrent for layer in f.layers)
    r, s = 3 * (1024 + 2 * 128), 128 * 1024
    host = estimate(f, RunConfig(ctx=8192, parallel=3, gpus=0)).device("host")
    assert host.context == 4 * (r + s) * 3 * 4  # 4 layers, 3 sequences, 4 bytes


def test_hybrid_lfm2_keeps_kv_only_on_attention_layers(tmp_path: Path) -> None:
    # LFM2: head_count_kv 0 marks a short-convolution layer with n_embd * (L - 1) state.
    meta = {"lfm2.shortconv.l_cache": 3}
    shape = dataclasses.replace(BASE, name="lfm", arch="lfm2", n_head_kv=[0, 2, 0, 2], extra=meta)
    f = facts_of(tmp_path, shape)
    assert [layer.recurrent for layer in f.layers] == [True, False, True, False]
    host = estimate(f, RunConfig(ctx=4096, gpus=0)).device("host")
    kv = 2 * 4096 * 128 * 2 * 2
    conv = 2 * 512 * 2 * 4
    assert host.context == kv + conv


def test_rwkv_state(tmp_path: Path) -> None:
    meta = {"rwkv6.wkv.head_size": 64, "rwkv6.token_shift_count": 2}
    f = facts_of(tmp_path, dataclasses.replace(BASE, name="rw", arch="rwkv6", extra=meta))
    host = estimate(f, RunConfig(ctx=4096, gpus=0)).device("host")
    assert host.context == 4 * (2 * 512 + 512 * 64) * 4


def test_unknown_architecture_is_conservative_and_says_so(tmp_path: Path) -> None:
    known = facts_of(tmp_path, BASE)
    odd = facts_of(tmp_path, dataclasses.replace(BASE, name="odd", arch="mystery-net"))
    cfg = RunConfig(ctx=4096, gpus=0)
    a, b = estimate(known, cfg), estimate(odd, cfg)
    assert not odd.known
    assert b.device("host").context == int(a.device("host").context * 1.25)
    assert b.device("host").compute > a.device("host").compute
    assert "'mystery-net' is not modelled exactly" in b.notes[0]


def test_full_offload_puts_everything_but_embeddings_on_the_gpu(tmp_path: Path) -> None:
    f = facts_of(tmp_path, dataclasses.replace(SHAPES["gqa"], weights="q8_0", tied=True))
    result = estimate(f, RunConfig(ctx=4096))
    host, gpu = result.device("host"), result.device("cuda0")
    assert host.model == f.token_embd_bytes
    # The tied head is a copy of the embeddings, padded for CUDA (768 % 512 != 0).
    assert f.head_bytes_cuda > f.token_embd_bytes
    expect = sum(layer.bytes_cuda for layer in f.layers) + f.output_norm_cuda + f.head_bytes_cuda
    assert gpu.model == expect
    assert gpu.overhead == 588 * MIB
    assert host.context == 0


def test_gpu_layers_offload_the_output_first(tmp_path: Path) -> None:
    f = facts_of(tmp_path, dataclasses.replace(SHAPES["gqa"], weights="f16"))  # 8 layers
    one = estimate(f, RunConfig(gpu_layers=1))
    assert one.device("cuda0").model == f.output_norm_cuda + f.head_bytes_cuda
    assert one.device("cuda0").context == 0
    three = estimate(f, RunConfig(gpu_layers=3)).device("cuda0")
    assert three.model == f.layers[6].bytes_cuda + f.layers[7].bytes_cuda + f.head_bytes_cuda + (
        f.output_norm_cuda
    )
    # Layers left on the host keep their weights and cache there.
    host = estimate(f, RunConfig(gpu_layers=3)).device("host")
    assert host.model == f.token_embd_bytes + sum(layer.bytes_host for layer in f.layers[:6])
    assert host.context > 0


def test_no_gpu_layers_leave_the_head_and_compute_on_the_host(tmp_path: Path) -> None:
    """--gpu-layers 0 on one GPU: nothing of the model on it, as with two GPUs (a regression
    had put the output head and its compute buffer on cuda0, so 0 and 1 layers agreed)."""
    f = facts_of(tmp_path, dataclasses.replace(SHAPES["gqa"], weights="f16"))
    for gpus in (1, 2):
        none = estimate(f, RunConfig(gpu_layers=0, gpus=gpus))
        gpu = none.device("cuda0")
        assert (gpu.model, gpu.context, gpu.compute) == (0, 0, 0)
        assert none.device("host").model == f.weight_bytes
    one = estimate(f, RunConfig(gpu_layers=1)).device("cuda0")
    assert one.model == f.output_norm_cuda + f.head_bytes_cuda
    assert one.compute > 0


def test_tensor_split_over_two_gpus(tmp_path: Path) -> None:
    f = facts_of(tmp_path, dataclasses.replace(SHAPES["gqa"], weights="f16"))  # 8 layers + head
    result = estimate(f, RunConfig(gpus=2, tensor_split=(3.0, 1.0)))
    gpu0, gpu1 = result.device("cuda0"), result.device("cuda1")
    # Layers 0-6 (7/9 < 3/4 of the 9 offloaded blocks) on GPU 0; layer 7 and the head on GPU 1.
    assert gpu0.model == sum(layer.bytes_cuda for layer in f.layers[:7])
    assert gpu1.model == f.layers[7].bytes_cuda + f.output_norm_cuda + f.head_bytes_cuda
    assert gpu0.overhead == gpu1.overhead == 588 * MIB
    assert gpu0.context == 7 * gpu1.context


def test_cpu_only_build_holds_everything_on_the_host(tmp_path: Path) -> None:
    f = facts_of(tmp_path, BASE)
    result = estimate(f, RunConfig(gpus=0))
    assert [d.name for d in result.devices] == ["host"]
    assert result.device("host").model == f.weight_bytes
    assert result.device("host").overhead == 0


def test_flash_attention_drops_the_kq_matrix(tmp_path: Path) -> None:
    f = facts_of(tmp_path, BASE)
    on = estimate(f, RunConfig(ctx=16384, flash_attn="on", gpus=0)).device("host").compute
    off = estimate(f, RunConfig(ctx=16384, flash_attn="off", gpus=0)).device("host").compute
    assert off - on >= 16384 * 512 * 8 * 4  # n_kv x tokens x heads x f32
