"""Placement options: which GPU sets a split is offered, in what order, and estimated how often."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import pytest

from reconciler.config.desired import ModelSpec
from reconciler.estimate import memory
from reconciler.estimate.facts import ModelFacts
from reconciler.lockfile import facts_from_file
from reconciler.plan import options
from reconciler.plan.budget import GpuBudget
from reconciler.plan.options import (
    MAX_SPLIT_GPUS,
    VARIANT_RANK,
    best_sets,
    layer_rank,
    most_mib,
    options_for,
    run_config,
)
from tests.ggufs import Shape, write_gguf


def every_set(budget: Sequence[int], size: int) -> list[tuple[int, ...]]:
    """The reference: every combination, largest budget sum first (ties in index order)."""
    return sorted(
        itertools.combinations(range(len(budget)), size), key=lambda s: -sum(budget[g] for g in s)
    )


def sums(sets: Sequence[tuple[int, ...]], budget: Sequence[int]) -> list[int]:
    return [sum(budget[g] for g in s) for s in sets]


def test_on_small_machines_every_combination_comes_largest_sum_first() -> None:
    rng = random.Random(3)
    for _ in range(300):
        budget = [rng.choice([8000, 10000, 12000, 20000]) for _ in range(rng.randint(1, 7))]
        size = rng.randint(1, len(budget))
        got = best_sets(range(len(budget)), budget, size, 40)  # C(7, k) <= 35
        assert sorted(got) == sorted(every_set(budget, size))
        assert sums(got, budget) == sorted(sums(got, budget), reverse=True)


def test_with_distinct_budgets_the_sets_are_those_of_largest_sum() -> None:
    rng = random.Random(5)
    for _ in range(200):
        n = rng.randint(2, 12)
        budget = rng.sample(range(1000, 30000, 7), n)
        size, limit = rng.randint(1, n), rng.randint(1, 40)
        got = best_sets(range(n), budget, size, limit)
        assert len(set(got)) == len(got) == min(limit, len(every_set(budget, size)))
        assert sums(got, budget) == sums(every_set(budget, size)[:limit], budget)


def test_equal_gpus_are_offered_in_disjoint_sets_first() -> None:
    budget = [22000] * 64
    pairs = best_sets(range(64), budget, 2, 32)
    assert pairs == [(2 * i, 2 * i + 1) for i in range(32)]
    fives = best_sets(range(64), budget, 5, 32)
    assert len(fives) == 32
    assert len(set().union(*fives[:12])) == 60  # 12 disjoint sets, then shifted ones
    mixed = [80000 if g % 2 else 24000 for g in range(64)]
    assert best_sets(range(64), mixed, 3, 4) == [(1, 3, 5), (7, 9, 11), (13, 15, 17), (19, 21, 23)]


def test_only_the_given_gpus_are_used() -> None:
    budget = [9000, 1000, 8000, 7000, 6000]
    assert best_sets([1, 3, 4], budget, 2, 32) == [(3, 4), (1, 3), (1, 4)]
    assert best_sets([1, 3, 4], budget, 4, 32) == []
    assert best_sets([1, 3, 4], budget, 2, 0) == []


SHAPE = Shape("split", n_layer=24, n_embd=1024, n_head=16, n_head_kv=4, n_ff=2816, n_vocab=32000)


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> ModelFacts:
    path = tmp_path_factory.mktemp("gguf") / "split.gguf"
    return facts_from_file(write_gguf(path, SHAPE, sparse=True))


def budgets_of(values: Sequence[int]) -> list[GpuBudget]:
    return [
        GpuBudget(
            label=str(i),
            index=i,
            uuid=f"GPU-{i}",
            name="GPU",
            total_mib=v + 2048,
            reserve_mib=2048,
            foreign_mib=0,
            budget_mib=v,
            thermal="normal",
            usable=True,
            startable=True,
        )
        for i, v in enumerate(values)
    ]


def spec(**fields: object) -> ModelSpec:
    return ModelSpec.model_validate({"name": "m", "gguf": "/m.gguf", **fields})


def test_options_come_one_gpu_then_splits_then_partial_offload(facts: ModelFacts) -> None:
    model = spec(gpu_layers="auto", fallbacks=["small"])
    small = spec(name="small", split="never")
    got = options_for(model, [small], {"m": facts, "small": facts}, budgets_of([20000] * 4))
    kinds = [(o.variant, o.rank, len(o.gpus), o.gpu_layers) for o in got]
    assert kinds == sorted(kinds, key=lambda k: (k[0] != "m", k[1]))
    assert [k[2] for k in kinds if k[1] == 0] == [1, 1, 1, 1]
    assert {k[2] for k in kinds if k[1] == 1} == {2, 3, 4}
    cpu = layer_rank(facts.n_layer + 1, 0)
    assert [k[3] for k in kinds if k[0] == "m" and k[1] == cpu] == [0]  # the CPU, last
    assert max(k[1] for k in kinds if k[0] == "m") == cpu
    assert all(k[1:] == (VARIANT_RANK, 1, "all") for k in kinds if k[0] == "small")


def test_splits_stop_at_what_llama_cpp_can_drive(facts: ModelFacts) -> None:
    got = options_for(spec(), [], {"m": facts}, budgets_of([20000] * 40))
    assert max(len(o.gpus) for o in got) == MAX_SPLIT_GPUS


def test_each_configuration_is_estimated_once_and_reused_exactly(
    facts: ModelFacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def counted(f: ModelFacts, cfg: memory.RunConfig) -> memory.Estimate:
        calls.append(cfg)
        return memory.estimate(f, cfg)

    monkeypatch.setattr(options, "estimate", counted)
    model = spec()
    options_for(model, [], {"m": facts}, budgets_of([20000] * 12))
    assert len(calls) == 12  # one GPU (the same on each), then one per split size 2..12
    calls.clear()
    # 10000 : 20000 is 20000 : 40000: the same shares, one estimate
    got = options_for(model, [], {"m": facts}, budgets_of([10000, 20000, 20000, 40000]))
    assert len(calls) < len(got)
    for o in got:
        split = o.tensor_split
        cfg = run_config(model, len(o.gpus), tensor_split=split)
        fresh = memory.estimate(facts, cfg)
        assert o.mib == tuple(
            -(-fresh.device(f"cuda{i}").total // memory.MIB) for i in range(len(o.gpus))
        )
        assert o.host_mib == -(-fresh.device("host").total // memory.MIB)


def test_many_gpus_are_planned_without_listing_every_combination(facts: ModelFacts) -> None:
    got = options_for(spec(), [], {"m": facts}, budgets_of([20000 + 100 * i for i in range(64)]))
    assert len(got) == 64 + 32 * (MAX_SPLIT_GPUS - 1)


def sized(backend: str, vram_mib: int, **fields: object) -> ModelSpec:
    source = {"vllm": {"model": "org/m"}, "ollama": {"model": "m"}, "command": {"argv": ["/x"]}}
    return ModelSpec.model_validate(
        {"name": "m", "backend": backend, "vram_mib": vram_mib, **source[backend], **fields}
    )


def test_vllm_splits_evenly_over_two_four_or_eight_gpus_after_one() -> None:
    got = options_for(sized("vllm", 30001), [], {}, budgets_of([20000] * 6))
    order = [(o.rank, o.tensor_parallel or 0) for o in got]
    assert order == sorted(order)
    assert order[:6] == [(0, 1)] * 6  # one GPU first, then tensor parallel (rank 1)
    assert {(o.tensor_parallel, len(o.gpus)) for o in got} == {(1, 1), (2, 2), (4, 4)}
    assert {o.mib for o in got if o.tensor_parallel == 4} == {(7501,) * 4}  # ceil(30001 / 4)
    assert all(o.tensor_split is None and o.host_mib == 0 for o in got)


def test_backends_that_run_on_one_gpu_get_one_gpu_options_only() -> None:
    budgets = budgets_of([20000] * 4)
    for model in (
        sized("ollama", 30000),
        sized("command", 30000),
        sized("vllm", 30000, split="never"),
    ):
        got = options_for(model, [], {}, budgets)
        assert [o.gpus for o in got] == [(0,), (1,), (2,), (3,)]
        assert {o.tensor_parallel for o in got} == ({1} if model.backend == "vllm" else {None})


def test_the_most_a_placement_can_have_depends_on_how_the_backend_splits() -> None:
    room = [20000, 9000, 8000, 7000, 3000]
    assert most_mib(sized("ollama", 1), room) == 20000
    assert most_mib(sized("command", 1), room) == 20000
    assert most_mib(sized("vllm", 1, split="never"), room) == 20000
    assert most_mib(sized("vllm", 1), room) == 28000  # four even shares of 7000
    assert most_mib(sized("vllm", 1), [20000, 9000, 8000]) == 20000  # two of 9000 is less
    assert most_mib(spec(), room) == 47000
    assert most_mib(spec(), [1000] * 40) == 1000 * MAX_SPLIT_GPUS
    assert most_mib(spec(split="never"), room) == 20000
    assert most_mib(spec(), []) == 0
