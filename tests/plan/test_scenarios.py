"""Table-driven plan cases: each file in scenarios/ is desired + observed -> expected actions.

`observed` starts from a hardware profile (bundled, or a file under scenarios/profiles/ when
the name ends in .yaml) and adds programs, running instances of ours and
temperatures. Models with `shape` get a GGUF header written for them (sparse); the others
state `vram_mib`. `lost` lists GPUs fallen off the bus. An instance is started as the desired
file says unless its `launch` names fields it was started with instead (`{ctx: 8192}`);
`source: label` makes it one only its label says is ours; `unreported: true` one whose memory
the driver does not report; `estimate_mib` is the journal's estimate. `host_available_mib`
sets the host's available RAM. `expect` lists every action: model, action, GPUs, words of the
reason and, where given, the tensor split (as fractions) and the layers offloaded.

Every case is then carried out on the simulated machine and planned again: no GPU is ever over
its budget, and the second plan changes nothing (`settles: false` for the cases that shed one
model per plan while a GPU stays hot).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from reconciler.config.desired import Desired
from reconciler.config.loader import load_desired, load_profile
from reconciler.config.yamlfile import dump_yaml
from reconciler.estimate.facts import ModelFacts
from reconciler.launch import Launch
from reconciler.observe.snapshot import from_profile
from reconciler.pipeline import model_facts
from reconciler.plan.budget import gpu_budgets
from reconciler.plan.model import CHANGES
from reconciler.plan.options import Option
from reconciler.plan.planner import make_plan
from reconciler.plan.resolve import launch_for
from reconciler.state import GpuProcess, Instance, ObservedState
from tests.ggufs import Shape, write_gguf
from tests.plan.simulate import carry_out

SCENARIOS = Path(__file__).parent / "scenarios"
CASES = sorted(SCENARIOS.glob("*.yaml"))


def _launch(
    desired: Desired, facts: dict[str, ModelFacts], state: ObservedState, i: dict[str, Any]
) -> Launch | None:
    """The launch instance `i` was started with: as the desired file says, but for `launch`."""
    spec = desired.model_named(i["model"])
    if spec is None:
        return None
    budgets = gpu_budgets(desired, state)
    position = {b.label: k for k, b in enumerate(budgets)}
    changes = dict(i.get("launch") or {})
    layers = changes.get("gpu_layers", "all")
    gpus = tuple(position[g] for g in i["gpus"])
    split = tuple(changes.get("tensor_split") or ()) or (
        tuple(1.0 for _ in gpus) if len(gpus) > 1 else None
    )
    option = Option(i["model"], gpus, (), 0, tensor_split=split, gpu_layers=layers)
    principal = next((m for m in desired.models if i["model"] in (m.name, *m.fallbacks)), spec)
    launch = launch_for(principal, spec, option, facts.get(spec.name), budgets)
    return launch.model_copy(update=changes)


def observed_state(
    spec: dict[str, Any], desired: Desired | None = None, facts: dict[str, ModelFacts] | None = None
) -> ObservedState:
    name = spec.get("profile", "rtx4090")
    profile = load_profile(str(SCENARIOS / "profiles" / name) if name.endswith(".yaml") else name)
    state = from_profile(profile.spec, profile.name)
    gpus = list(state.gpus)
    for p in spec.get("processes", []):
        proc = GpuProcess(
            pid=p["pid"],
            used_mib=p["used_mib"],
            kind=p.get("kind", "graphics"),
            name=p["name"],
            owner="foreign",
        )
        gpus[p["gpu"]] = gpus[p["gpu"]].with_process(proc, p["used_mib"])
    for index, temp in (spec.get("temperature") or {}).items():
        gpus[int(index)] = gpus[int(index)].model_copy(update={"temperature_c": temp})
    for index in spec.get("lost", []):
        gpus[index] = gpus[index].model_copy(update={"lost": True})
    if "host_available_mib" in spec:
        host = state.host.model_copy(update={"ram_available_mib": spec["host_available_mib"]})
        state = state.model_copy(update={"host": host})
    base = state.model_copy(update={"gpus": tuple(gpus)})
    instances = []
    for i in spec.get("instances", []):
        unreported = i.get("unreported", False)
        share = i["used_mib"] // max(len(i["gpus"]), 1)
        for label in i["gpus"]:
            proc = GpuProcess(
                pid=i["pid"],
                used_mib=None if unreported else share,
                kind="compute",
                name="llama-server",
                owner="ours",
                instance=i["model"],
            )
            gpus[int(label)] = gpus[int(label)].with_process(proc, share)
        launch = _launch(desired, facts or {}, base, i) if desired is not None else None
        instances.append(
            Instance(
                model=i["model"],
                pid=i["pid"],
                start_time=float(i["pid"]),
                source=i.get("source", "journal"),
                gpus=tuple(i["gpus"]),
                used_mib=i["used_mib"],
                used_by_gpu={} if unreported else dict.fromkeys(i["gpus"], share),
                launch=launch,
                estimate_mib=i.get("estimate_mib"),
            )
        )
    return state.model_copy(update={"gpus": tuple(gpus), "instances": tuple(instances)})


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_scenario(path: Path, tmp_path: Path) -> None:
    case = YAML(typ="safe").load(path)
    desired = case["desired"]
    for m in desired["models"]:
        shape = m.pop("shape", None)
        if shape is not None:
            m["gguf"] = str(
                write_gguf(tmp_path / f"{m['name']}.gguf", Shape(m["name"], **shape), sparse=True)
            )
    file = tmp_path / "desired.yaml"
    file.write_text(dump_yaml(desired))
    loaded = load_desired(file)
    facts, problems, _warnings = model_facts(loaded.spec, str(file))
    observed = observed_state(case.get("observed") or {}, loaded.spec, facts)
    plan = make_plan(loaded.spec, observed, facts, problems)
    got = [(a.model, a.action, list(a.gpus)) for a in plan.actions]
    want = [(e["model"], e["action"], e.get("gpus", [])) for e in case["expect"]]
    assert got == want, "\n".join(
        f"{a.action} {a.model} {a.gpus}: {a.reason}" for a in plan.actions
    )
    for action, expected in zip(plan.actions, case["expect"], strict=True):
        for words in expected.get("reason", []):
            assert words in action.reason, f"{action.model}: {action.reason!r} lacks {words!r}"
        if "tensor_split" in expected:
            assert action.tensor_split is not None
            got_split = [round(x / sum(action.tensor_split), 2) for x in action.tensor_split]
            assert got_split == expected["tensor_split"], action.model
        if "gpu_layers" in expected:
            assert action.gpu_layers == expected["gpu_layers"], action.model
    assert all(g.planned_mib <= g.budget_mib for g in plan.gpus), plan.gpus
    carried = carry_out(plan, observed)
    again = make_plan(loaded.spec, carried, facts, problems)
    assert all(g.planned_mib <= g.budget_mib for g in again.gpus), again.gpus
    if case.get("settles", True):
        changes = [(a.model, a.action, a.reason) for a in again.actions if a.action in CHANGES]
        assert not changes, changes
