"""What if one more model ran: the searches against the real estimator, the room the planner's
budgets leave, and the planner's own verdict with a desired file."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.config.desired import Desired, ModelSpec
from reconciler.estimate.facts import ModelFacts
from reconciler.estimate.memory import MIB, estimate
from reconciler.lockfile import facts_from_file
from reconciler.plan.options import run_config
from reconciler.plan.whatif import CTX_STEP, UNKNOWN_TRAINED_CTX, _largest, what_if
from reconciler.state import GpuProcess, GpuState, HostState, Instance, ObservedState
from tests.ggufs import Shape, write_gguf

# Llama-style, 16 layers, 1.6 GiB in F16; a long trained context, so that the largest context
# that fits is inside the range searched.
LONG = Shape(
    "long", n_layer=16, n_embd=2048, n_head=16, n_head_kv=4, n_ff=5632, n_vocab=32000,
    ctx_train=131072,
)  # fmt: skip


@pytest.fixture(scope="module")
def long_facts(tmp_path_factory: pytest.TempPathFactory) -> ModelFacts:
    path = tmp_path_factory.mktemp("whatif") / "long.gguf"
    return facts_from_file(write_gguf(path, LONG, sparse=True))


def gpu(index: int, total: int, *processes: GpuProcess, **update: object) -> GpuState:
    g = GpuState(
        index=index,
        uuid=f"GPU-{index}",
        name="test GPU",
        memory_total_mib=total,
        memory_used_mib=0,
        memory_free_mib=total,
    )
    for p in processes:
        g = g.with_process(p)
    return g.model_copy(update=update)


def machine(*gpus: GpuState, instances: tuple[Instance, ...] = ()) -> ObservedState:
    host = HostState(ram_total_mib=65536, ram_available_mib=60000, cpus=8)
    return ObservedState(source="test", gpus=gpus, host=host, instances=instances)


def game(mib: int, pid: int = 7) -> GpuProcess:
    return GpuProcess(pid=pid, used_mib=mib, kind="graphics", name="game")


def model(**update: object) -> ModelSpec:
    return ModelSpec(name="new", gguf=Path("/m/long.gguf"), **update)  # type: ignore[arg-type]


def need(facts: ModelFacts, spec: ModelSpec, **change: object) -> int:
    """MiB on one GPU, straight from the estimator (rounded up, as the planner does)."""
    cfg = run_config(spec, 1).model_copy(update=change)
    return -(-estimate(facts, cfg).device("cuda0").total // MIB)


def test_largest_finds_the_last_true() -> None:
    assert _largest(lambda k: k <= 37, 100) == 37
    assert _largest(lambda k: k <= 500, 100) == 100
    assert _largest(lambda _k: False, 100) is None
    assert _largest(lambda _k: True, 0) is None


def test_largest_ctx_is_where_the_estimator_crosses_the_room(long_facts: ModelFacts) -> None:
    w = what_if(model(), long_facts, machine(gpu(0, 5120)))
    (room,) = w.rooms
    assert room.free_mib == 5120 - 2048  # the default headroom: max(2048 MiB, 10 %)
    for row in w.rows:
        top = row.max_ctx
        assert top is not None
        assert 4096 < top < LONG.ctx_train
        cache = {"cache_type_k": row.cache_type, "cache_type_v": row.cache_type}
        assert need(long_facts, model(), ctx=top, **cache) <= room.free_mib
        assert need(long_facts, model(), ctx=top + CTX_STEP, **cache) > room.free_mib
    f16, q8, q4 = (r.max_ctx or 0 for r in w.rows)
    assert f16 < q8 < q4  # a smaller cache holds a longer context


def test_the_trained_context_bounds_the_search(long_facts: ModelFacts) -> None:
    w = what_if(model(), long_facts, machine(gpu(0, 81920)))
    assert w.cap == LONG.ctx_train
    assert {r.max_ctx for r in w.rows} == {LONG.ctx_train}
    assert w.verdict.status == "fits"


def test_unknown_trained_context_is_searched_to_a_stated_bound(tmp_path: Path) -> None:
    shape = Shape("tiny", ctx_train=0)
    facts = facts_from_file(write_gguf(tmp_path / "tiny.gguf", shape))
    w = what_if(model(), facts, machine(gpu(0, 81920)))
    assert w.cap == UNKNOWN_TRAINED_CTX
    assert w.notes == (
        f"the GGUF does not give its trained context; searched up to {UNKNOWN_TRAINED_CTX}",
    )


def test_another_program_takes_room_and_the_answer_shrinks(long_facts: ModelFacts) -> None:
    idle = what_if(model(), long_facts, machine(gpu(0, 8192)))
    busy = what_if(model(), long_facts, machine(gpu(0, 8192, game(2000))))
    assert busy.rooms[0].free_mib == idle.rooms[0].free_mib - 2000
    assert (busy.rows[0].max_ctx or 0) < (idle.rows[0].max_ctx or 0)


def test_partial_offload_gives_the_most_layers_that_fit(long_facts: ModelFacts) -> None:
    w = what_if(model(ctx=8192), long_facts, machine(gpu(0, 3600)), cache_types=("f16",))
    (row,) = w.rows
    room = w.rooms[0].free_mib
    assert row.max_ctx is None
    assert row.at.status == "partial"
    layers = row.at.gpu_layers
    assert layers is not None
    assert 0 < layers < long_facts.n_layer
    assert need(long_facts, model(ctx=8192), gpu_layers=layers) == row.at.partial_mib <= room
    assert need(long_facts, model(ctx=8192), gpu_layers=layers + 1) > room
    assert (w.verdict.status, w.verdict.gpu_layers, w.verdict.fits) == ("partial", layers, False)


def test_a_split_holds_what_no_single_gpu_does(long_facts: ModelFacts) -> None:
    w = what_if(model(ctx=4096), long_facts, machine(gpu(0, 3800), gpu(1, 4000)))
    by_place = {(r.gpus, r.cache_type): r for r in w.rows}
    assert by_place[("0",), "f16"].at.status == "partial"
    split = by_place[("0", "1"), "f16"]
    assert split.at.status == "fits"
    # --tensor-split by budget, as the planner launches it: 1752 and 1952 MiB
    assert split.tensor_split == pytest.approx((1752 / 3704, 1952 / 3704))
    assert (w.verdict.status, w.verdict.gpus, w.verdict.split) == ("fits", ("0", "1"), True)


def test_a_gpu_too_hot_for_new_starts_is_not_a_place(long_facts: ModelFacts) -> None:
    w = what_if(model(), long_facts, machine(gpu(0, 81920, temperature_c=82)))
    assert w.rows == ()
    assert w.verdict.status == "no"
    assert w.verdict.reason == (
        "no GPU may take it (GPU 0: too hot for new starts: 82 C >= shed_above_c 80)"
    )


def test_running_instances_stay_and_are_charged(long_facts: ModelFacts) -> None:
    ours = GpuProcess(pid=50, used_mib=3000, kind="compute", owner="ours", instance="chat")
    chat = Instance(
        model="chat", pid=50, start_time=1.0, gpus=("0",), used_mib=3000, used_by_gpu={"0": 3000}
    )
    w = what_if(model(), long_facts, machine(gpu(0, 16384, ours), instances=(chat,)))
    assert w.rooms[0].free_mib == 16384 - 2048 - 3000


def desired(*models: dict[str, object]) -> Desired:
    return Desired.model_validate({"version": 1, "models": list(models)})


def entry(name: str, priority: int, ctx: int) -> dict[str, object]:
    return {"name": name, "gguf": f"/m/{name}.gguf", "priority": priority, "ctx": ctx}


def test_lower_priority_models_give_way_as_the_planner_decides(long_facts: ModelFacts) -> None:
    spec = desired(entry("chat", 100, 4096), entry("batch", 10, 131072))
    facts = {"chat": long_facts, "batch": long_facts}
    observed = machine(gpu(0, 12288))
    kept = what_if(model(priority=10), long_facts, observed, desired=spec, facts=facts)
    # a tie stays with the model earlier in the file: only some layers beside it
    assert (kept.verdict.status, kept.verdict.displaced, kept.verdict.planned) == (
        "partial",
        (),
        True,
    )
    won = what_if(model(priority=50), long_facts, observed, desired=spec, facts=facts)
    assert won.verdict.status == "displacing"
    assert [(d.model, d.priority, d.after) for d in won.verdict.displaced] == [
        ("batch", 10, "blocked")
    ]
    assert won.verdict.displaced[0].before == "start on GPU 0"
    (row,) = [r for r in won.rows if r.cache_type == "f16"]
    assert row.at.displaces == ("batch",)
    # the planner's figure for the newcomer is the row's
    assert won.verdict.need_mib["0"] == row.at.need_mib[0]
    room = won.rooms[0]
    assert room.after_mib > room.free_mib


@pytest.mark.parametrize("cache", ["f16", "q8_0", "q4_0"])
def test_the_searches_rely_on_the_estimator_growing(
    long_facts: ModelFacts, gemma_gguf: Path, cache: str
) -> None:
    """Binary search is exact only if more context, or more layers on the GPU, never needs
    less: checked on every step searched, for a generated model and the real Gemma 3."""
    spec = model(cache_type=cache)
    for facts in (long_facts, facts_from_file(gemma_gguf)):
        by_ctx = [need(facts, spec, ctx=k * CTX_STEP) for k in range(1, 129)]
        assert by_ctx == sorted(by_ctx)
        by_layers = [need(facts, spec, gpu_layers=k) for k in range(1, facts.n_layer + 2)]
        assert by_layers == sorted(by_layers)
