"""The plan simulated by the next stage: carry it out, observe, plan again; nothing may change.

Random machines (one to three GPUs, other programs, temperatures up to `shed_above_c`,
either foreign-process policy, drivers that report each process's memory or not) and random
desired files mixing real GGUF models (headers written by the `gguf` package), with
fallbacks, `gpu_layers: auto` and splits, and models sized by `vram_mib`. Each plan is carried
out by `simulate.carry_out` (stops and restarts end the old process, starts run the resolved
launch and hold what the plan estimated); then:
- no GPU is over its budget, in the plan or in the plan made after it;
- the plan made after it changes nothing;
- after the machine drifts (a game takes memory, or leaves), the new plan, carried out, is
  followed by one that changes nothing again.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.config.desired import Desired
from reconciler.estimate.facts import ModelFacts
from reconciler.lockfile import facts_from_file
from reconciler.plan.model import CHANGES, Plan
from reconciler.plan.planner import make_plan
from reconciler.state import GpuProcess, GpuState, HostState, ObservedState
from tests.ggufs import Shape, write_gguf
from tests.plan.simulate import carry_out

SHAPES = {
    "small": Shape("small", n_layer=16, n_embd=2048, n_head=16, n_head_kv=4, n_ff=5632,
                   n_vocab=32000, weights="q8_0"),
    "mid": Shape("mid", n_layer=32, n_embd=4096, n_head=32, n_head_kv=8, n_ff=11008,
                 n_vocab=32000, weights="q4_0"),
    "big": Shape("big", n_layer=40, n_embd=5120, n_head=40, n_head_kv=8, n_ff=13824,
                 n_vocab=32000, weights="q8_0"),
}  # fmt: skip


@functools.cache
def files() -> dict[str, tuple[Path, ModelFacts]]:
    """The shapes as GGUF headers (sparse files), written once per test run."""
    folder = Path(tempfile.mkdtemp(prefix="carry-out-"))
    out = {}
    for name, shape in SHAPES.items():
        path = write_gguf(folder / f"{name}.gguf", shape, sparse=True)
        out[name] = (path, facts_from_file(path))
    return out


GGUF_MODEL = st.fixed_dictionaries(
    {
        "shape": st.sampled_from(sorted(SHAPES)),
        "ctx": st.sampled_from([2048, 8192, 32768]),
        "gpu_layers": st.sampled_from(["all", "all", "auto"]),
        "split": st.sampled_from(["auto", "never"]),
        "cache_type": st.sampled_from(["f16", "q8_0"]),
        "fallback": st.one_of(st.none(), st.sampled_from(["small"])),
    }
)
SIZED_MODEL = st.fixed_dictionaries(
    {"backend": st.sampled_from(["command", "vllm"]), "vram_mib": st.integers(500, 30000)}
)
MODEL = st.tuples(
    st.one_of(GGUF_MODEL, SIZED_MODEL),
    st.integers(0, 3),  # priority
    st.one_of(st.none(), st.just([1])),  # pin
)
GPU = st.tuples(
    st.sampled_from([12288, 24576, 81920]),  # total
    st.integers(0, 9000),  # other programs
    st.sampled_from([40, 70, 81]),  # temperature: normal, warning, above shed_above_c
)


def desired_of(
    models: list[tuple[dict[str, Any], int, list[int] | None]], policy: str, gpus: int
) -> tuple[Desired, dict[str, ModelFacts]]:
    entries: list[dict[str, Any]] = []
    facts: dict[str, ModelFacts] = {}
    for i, (m, priority, pin) in enumerate(models):
        name = f"m{i}"
        entry: dict[str, Any] = {"name": name, "priority": priority, "port": 9000 + i}
        if pin and max(pin) < gpus:
            entry["pin"] = pin
        if "shape" in m:
            path, fact = files()[m["shape"]]
            facts[name] = fact
            entry.update(
                gguf=str(path),
                ctx=m["ctx"],
                gpu_layers=m["gpu_layers"],
                split=m["split"],
                cache_type=m["cache_type"],
            )
            if m["fallback"] is not None:
                variant = f"m{i}-fb"
                path, fact = files()[m["fallback"]]
                facts[variant] = fact
                entry["fallbacks"] = [variant]
                entries.append({"name": variant, "gguf": str(path), "ctx": 2048, "port": 9000 + i})
        else:
            entry.update(backend=m["backend"], vram_mib=m["vram_mib"])
            entry["argv" if m["backend"] == "command" else "model"] = (
                ["/bin/serve"] if m["backend"] == "command" else "org/model"
            )
        entries.append(entry)
    data = {"version": 1, "policy": {"foreign_processes": policy}, "models": entries}
    return Desired.model_validate(data), facts


def machine(gpus: list[tuple[int, int, int]]) -> ObservedState:
    return ObservedState(
        source="test",
        gpus=tuple(
            GpuState(
                index=i,
                uuid=f"GPU-{i}",
                name="GPU",
                memory_total_mib=total,
                memory_used_mib=other,
                memory_free_mib=total - other,
                temperature_c=temp,
                processes=(GpuProcess(pid=900 + i, used_mib=other, kind="graphics", name="game"),)
                if other
                else (),
            )
            for i, (total, other, temp) in enumerate(gpus)
        ),
        host=HostState(ram_total_mib=65536, ram_available_mib=60000, cpus=8),
    )


def drift(observed: ObservedState, gpu: int, mib: int) -> ObservedState:
    """Another program on `gpu` now holds `mib` (0: it has quit)."""
    gpus = list(observed.gpus)
    g = gpus[gpu]
    old = sum(p.used_mib or 0 for p in g.processes if p.pid == 900 + gpu)
    rest = tuple(p for p in g.processes if p.pid != 900 + gpu)
    game = (GpuProcess(pid=900 + gpu, used_mib=mib, kind="graphics", name="game"),)
    gpus[gpu] = g.model_copy(
        update={
            "processes": rest + (game if mib else ()),
            "memory_used_mib": g.memory_used_mib - old + mib,
            "memory_free_mib": g.memory_free_mib + old - mib,
        }
    )
    return observed.model_copy(update={"gpus": tuple(gpus)})


def within_budgets(plan: Plan) -> None:
    for g in plan.gpus:
        assert g.planned_mib <= g.budget_mib, (
            g,
            [(a.model, a.action, a.reason) for a in plan.actions],
        )


def settled(plan: Plan) -> None:
    changes = [(a.model, a.action, a.reason) for a in plan.actions if a.action in CHANGES]
    assert not changes, changes


@settings(
    max_examples=int(os.environ.get("CARRY_OUT_EXAMPLES", "60")),  # more to hunt
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.lists(MODEL, min_size=1, max_size=5),
    st.lists(GPU, min_size=1, max_size=3),
    st.sampled_from(["yield", "ignore"]),
    st.booleans(),
    st.data(),
)
def test_carried_out_plans_settle(
    models: list[tuple[dict[str, Any], int, list[int] | None]],
    gpus: list[tuple[int, int, int]],
    policy: str,
    unreported: bool,
    data: st.DataObject,
) -> None:
    desired, facts = desired_of(models, policy, len(gpus))
    observed = machine(gpus)
    plan = make_plan(desired, observed, facts)
    within_budgets(plan)
    observed = carry_out(plan, observed, unreported=unreported)
    again = make_plan(desired, observed, facts)
    within_budgets(again)
    settled(again)
    # The machine drifts: a game on one GPU grows or quits; plan, carry out, plan again.
    gpu = data.draw(st.integers(0, len(gpus) - 1))
    observed = drift(observed, gpu, data.draw(st.sampled_from([0, 4000, 12000])))
    moved = make_plan(desired, observed, facts)
    within_budgets(moved)
    observed = carry_out(moved, observed, unreported=unreported)
    final = make_plan(desired, observed, facts)
    within_budgets(final)
    settled(final)
