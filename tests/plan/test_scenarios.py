"""Table-driven plan cases: each file in scenarios/ is desired + observed -> expected actions.

`observed` starts from a hardware profile (bundled, or a file under scenarios/profiles/ when
the name ends in .yaml) and adds programs, running instances of ours and
temperatures. Models with `shape` get a GGUF header written for them (sparse); the others
state `vram_mib`. `lost` lists GPUs fallen off the bus. `expect` lists every action: model,
action, GPUs, words of the reason and, where given, the tensor split (as fractions) and the
layers offloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from reconciler.commands.plan import model_facts
from reconciler.config.loader import load_desired, load_profile
from reconciler.config.yamlfile import dump_yaml
from reconciler.observe.snapshot import from_profile
from reconciler.plan.planner import make_plan
from reconciler.state import GpuProcess, Instance, ObservedState
from tests.ggufs import Shape, write_gguf

SCENARIOS = Path(__file__).parent / "scenarios"
CASES = sorted(SCENARIOS.glob("*.yaml"))


def observed_state(spec: dict[str, Any]) -> ObservedState:
    name = spec.get("profile", "rtx4090")
    profile = load_profile(str(SCENARIOS / "profiles" / name) if name.endswith(".yaml") else name)
    state = from_profile(profile.spec, profile.name)
    gpus = list(state.gpus)
    for p in spec.get("processes", []):
        g = gpus[p["gpu"]]
        proc = GpuProcess(
            pid=p["pid"],
            used_mib=p["used_mib"],
            kind=p.get("kind", "graphics"),
            name=p["name"],
            owner="foreign",
        )
        gpus[p["gpu"]] = g.model_copy(
            update={
                "processes": (*g.processes, proc),
                "memory_used_mib": g.memory_used_mib + p["used_mib"],
                "memory_free_mib": g.memory_free_mib - p["used_mib"],
            }
        )
    instances = []
    for i in spec.get("instances", []):
        for label in i["gpus"]:
            g = gpus[int(label)]
            proc = GpuProcess(
                pid=i["pid"],
                used_mib=i["used_mib"] // len(i["gpus"]),
                kind="compute",
                name="llama-server",
                owner="ours",
                instance=i["model"],
            )
            gpus[int(label)] = g.model_copy(
                update={
                    "processes": (*g.processes, proc),
                    "memory_used_mib": g.memory_used_mib + proc.used_mib,
                    "memory_free_mib": g.memory_free_mib - proc.used_mib,
                }
            )
        instances.append(
            Instance(
                model=i["model"],
                pid=i["pid"],
                start_time=1.0,
                gpus=tuple(i["gpus"]),
                used_mib=i["used_mib"],
                launch=i.get("launch"),
            )
        )
    for index, temp in (spec.get("temperature") or {}).items():
        gpus[int(index)] = gpus[int(index)].model_copy(update={"temperature_c": temp})
    for index in spec.get("lost", []):
        gpus[index] = gpus[index].model_copy(update={"lost": True})
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
    plan = make_plan(loaded.spec, observed_state(case.get("observed") or {}), facts, problems)
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
    if loaded.spec.policy.foreign_processes != "ignore":  # with ignore, what runs stays
        assert all(g.planned_mib <= g.budget_mib for g in plan.gpus)
