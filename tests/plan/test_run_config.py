"""The planner sizes a model with the flags its `extra_args` add that the estimator models."""

from __future__ import annotations

import pytest

from reconciler.config.desired import ModelSpec
from reconciler.estimate.facts import ModelFacts
from reconciler.estimate.memory import estimate
from reconciler.lockfile import facts_from_file
from reconciler.plan.options import run_config
from tests.ggufs import SHAPES, write_gguf


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> ModelFacts:
    folder = tmp_path_factory.mktemp("ggufs")
    return facts_from_file(write_gguf(folder / "gqa.gguf", SHAPES["gqa"], sparse=True))


def model(*extra_args: str, parallel: int = 1) -> ModelSpec:
    raw = {"name": "chat", "gguf": "m.gguf", "ctx": 8192, "parallel": parallel}
    return ModelSpec.model_validate({**raw, "extra_args": extra_args})


def test_a_larger_ubatch_grows_the_compute_buffer(facts: ModelFacts) -> None:
    default = estimate(facts, run_config(model(), 1)).device("cuda0")
    larger = estimate(facts, run_config(model("-ub", "2048"), 1)).device("cuda0")
    assert run_config(model("-ub", "2048"), 1).ubatch == 2048
    assert larger.compute > default.compute
    assert (larger.model, larger.context) == (default.model, default.context)
    inline = estimate(facts, run_config(model("--ubatch-size=2048"), 1)).device("cuda0")
    assert inline == larger


def test_a_unified_kv_cache_changes_the_kv_estimate(facts: ModelFacts) -> None:
    # 3 slots: PAD(8192 / 3, 256) = 2816 cells each, 8448 in all; unified: 8192.
    split = estimate(facts, run_config(model(parallel=3), 1)).device("cuda0").context
    unified = estimate(facts, run_config(model("--kv-unified", parallel=3), 1)).device("cuda0")
    assert unified.context * 8448 == split * 8192


def test_the_callers_settings_win_over_extra_args(facts: ModelFacts) -> None:
    cfg = run_config(model("-b", "512"), 2, tensor_split=(1.0, 1.0))
    assert (cfg.batch, cfg.gpus, cfg.tensor_split) == (512, 2, (1.0, 1.0))


def test_other_backends_do_not_read_llama_flags() -> None:
    vllm = ModelSpec(name="v", backend="vllm", model="org/m", vram_mib=1000, extra_args=("-b", "8"))
    assert run_config(vllm, 1).batch == 2048
