"""Fuzzing `reconcile fit`: generated models (shapes, trained contexts, sliding windows, cache
and weight types) against generated machines (GPUs of any size, other programs holding memory,
our instances, hot or lost GPUs), with random options and sometimes a desired file.

Beyond the runner's rules (no traceback, no hang, a message on exit 1) each answer must hold
together: exit 0 exactly when the verdict fits, 3 when it does not; no option fits above its
largest context; the figures are never negative; free room never exceeds the budget.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.state import GpuProcess, GpuState, HostState, Instance, ObservedState
from tests.fuzz.harness import Case, Outcome, run_campaign, scaled
from tests.ggufs import Shape, write_gguf

ROOT = Path(__file__).resolve().parents[2]
SEED = 1313
CASES = 120  # about 8 s of CPU on this machine (more wall time when its two cores are shared)
DESIRED = ("workstation.yaml", "dual-gpu.yaml", "gaming-desktop.yaml")


def _shape(rng: random.Random, k: int) -> Shape:
    n_head = rng.choice((1, 2, 4, 8))
    n_embd = n_head * rng.choice((32, 64))  # whole blocks of the quantized types
    arch, n_swa, pattern = rng.choice((("llama", 0, 0), ("qwen2", 0, 0), ("gemma3", 64, 6)))
    return Shape(
        f"m{k}",
        arch=arch,
        n_layer=rng.randint(1, 24),
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=rng.choice([d for d in (1, 2, 4, 8) if n_head % d == 0]),
        n_ff=n_embd * rng.choice((2, 3, 4)),
        n_vocab=rng.choice((256, 1024, 32000)),
        weights=rng.choice(("f16", "q8_0", "q4_0")),
        n_swa=n_swa,
        swa_pattern=pattern,
        ctx_train=rng.choice((0, 256, 1000, 4096, 32768, 131072, 1 << 20)),
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, Shape]]:
    rng = random.Random(SEED)
    folder = tmp_path_factory.mktemp("fit-fuzz")
    out = []
    for k in range(min(scaled(12), 60)):
        shape = _shape(rng, k)
        out.append((write_gguf(folder / f"m{k}.gguf", shape, sparse=True), shape))
    return out


def _gpu(rng: random.Random, index: int, pid: Iterator[int]) -> tuple[GpuState, Instance | None]:
    total = rng.choice((2048, 4096, 8192, 12288, 24576, 81920, rng.randint(512, 200_000)))
    g = GpuState(
        index=index,
        uuid=f"GPU-fuzz-{index}",
        name="fuzzed GPU",
        memory_total_mib=total,
        memory_used_mib=0,
        memory_free_mib=total,
        temperature_c=rng.choice((None, 40, 70, 82, 90)),
        lost=rng.random() < 0.05,
    )
    for _ in range(rng.randint(0, 3)):
        left = g.memory_free_mib
        g = g.with_process(
            GpuProcess(pid=next(pid), used_mib=rng.randint(0, left), kind="graphics", name="game")
        )
    instance = None
    if rng.random() < 0.3 and g.memory_free_mib > 0:
        held = rng.randint(1, g.memory_free_mib)
        p = GpuProcess(pid=next(pid), used_mib=held, kind="compute", owner="ours", instance="chat")
        g = g.with_process(p)
        instance = Instance(
            model="chat", pid=p.pid, start_time=1.0, gpus=(g.label,), used_mib=held,
            used_by_gpu={g.label: held},
        )  # fmt: skip
    return g, instance


def _snapshot(rng: random.Random) -> str:
    pids = iter(range(100, 10_000))
    found = [_gpu(rng, i, pids) for i in range(rng.choice((0, 1, 1, 2, 2, 3, 4)))]
    host = HostState(ram_total_mib=65536, ram_available_mib=rng.randint(0, 65536), cpus=8)
    return ObservedState(
        source="snapshot",
        gpus=tuple(g for g, _ in found),
        host=host,
        instances=tuple(i for _, i in found if i is not None),
    ).to_json()


def _argv(rng: random.Random, work: Path, models: list[tuple[Path, Shape]]) -> list[str]:
    path, _shape = rng.choice(models)
    argv = ["fit", str(path), "--json"]
    if rng.random() < 0.3:
        argv += ["--profile", rng.choice(("rtx4090", "2x3090", "4090+3060", "cpu-only"))]
    else:
        (work / "now.json").write_text(_snapshot(rng))
        argv += ["--observed", "now.json"]
    if rng.random() < 0.7:
        argv += ["--ctx", str(rng.choice((1, 255, 256, 4096, 65536, rng.randint(1, 1 << 21))))]
    if rng.random() < 0.3:
        argv += ["--parallel", str(rng.randint(1, 8))]
    if rng.random() < 0.3:
        argv += ["--cache-type", rng.choice(("f16", "q8_0", "q4_0", "q5_1", "iq4_nl"))]
    if rng.random() < 0.2:
        argv += ["--flash-attn", rng.choice(("on", "off", "auto"))]
    if rng.random() < 0.15:
        argv += ["--with", str(ROOT / "desired" / rng.choice(DESIRED))]
        argv += ["--priority", str(rng.randint(-10, 200))]
    return argv


def _incoherent(data: dict[str, Any], code: int) -> str | None:
    """What does not hold together in one answer, if anything."""
    verdict = data["verdict"]
    if (code == 0) != verdict["fits"]:
        return f"exit {code} but verdict fits={verdict['fits']}"
    asked, cap = data["asked"]["ctx"], data["ctx_searched_up_to"]
    for g in data["gpus"]:
        if not 0 <= g["free_mib"] <= g["after_giving_way_mib"] <= max(g["budget_mib"], 0):
            return f"GPU {g['label']}: free {g['free_mib']}, budget {g['budget_mib']}"
    for o in data["options"]:
        at, top = o["at_ctx"], o["max_ctx"]
        if any(n < 0 for n in at["need_mib"].values()):
            return f"negative need {at['need_mib']}"
        if top is not None and not 1 <= top <= cap:
            return f"largest ctx {top} outside 1..{cap}"
        if at["status"] == "fits" and asked <= cap and (top is None or top < asked):
            return f"fits at ctx {asked} but the largest ctx that fits is {top}: {o}"
        if at["status"] in ("partial", "no") and top is not None and top >= asked:
            return f"does not fit at ctx {asked} below its largest ctx {top}: {o}"
    return None


def _coherent(outcome: Outcome) -> str | None:
    if outcome.code in (0, 3):
        return _incoherent(json.loads(outcome.out), outcome.code)
    return None


def _cases(models: list[tuple[Path, Shape]]) -> Iterator[Case]:
    rng = random.Random(SEED)
    for index in range(scaled(CASES)):
        # Each case draws its options when the runner asks for its argv, in order, so a
        # failure replays from the seed and its index.
        yield Case(
            f"seed {SEED} case {index}",
            lambda work: _argv(rng, work, models),
            check=_coherent,
        )


def test_fit_fuzz(models: list[tuple[Path, Shape]], tmp_path: Path) -> None:
    campaign = run_campaign("fit", _cases(models), tmp_path, exits=(0, 1, 3))
    assert campaign.failures == []
