"""Fuzzing `reconcile plan`'s reasons: random desired files and snapshots that are true (used
memory within the total, instances where their memory is), with ties, fallbacks, pins, running
and label-only instances, hot GPUs, other programs and `max_models_per_gpu`. Every plan must
end without a traceback, and its reasons must hold: no tie called "higher-priority", no
negative figure, what a start says is left within its GPU's budget."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from reconciler.config.loader import load_profile
from reconciler.config.yamlfile import dump_yaml
from reconciler.observe.snapshot import from_profile
from reconciler.state import GpuProcess, Instance, ObservedState
from tests.fuzz.harness import Case, Outcome, run_campaign, scaled
from tests.ggufs import Shape, write_gguf

PROFILES = ("rtx4090", "rtx3060-12g", "2x3090", "4090+3060", "cpu-only", "a100-80g")
LEFT = re.compile(r"GPU (\S+): (-?\d+) of (-?\d+) MiB left")


def _models(rng: random.Random, gguf: Path) -> list[dict[str, Any]]:
    count = rng.randint(1, 6)
    out: list[dict[str, Any]] = []
    for k in range(count):
        m: dict[str, Any] = {"name": f"m{k}", "priority": rng.randrange(3), "port": 9000 + k}
        if rng.random() < 0.5:
            flash = rng.choice(["on", "off", "auto"])
            m |= {
                "gguf": str(gguf),
                "ctx": rng.choice([2048, 8192, 32768, 131072]),
                "cache_type": "f16" if flash == "off" else rng.choice(["f16", "q8_0", "q4_0"]),
                "flash_attn": flash,
                "gpu_layers": rng.choice(["all", "auto", 10]),
                "split": rng.choice(["auto", "never"]),
            }
        else:
            m |= {"backend": "command", "argv": ["/bin/x"], "vram_mib": rng.randint(100, 40000)}
        if rng.random() < 0.2:
            m["pin"] = [rng.randrange(3)]
        if k + 1 < count and rng.random() < 0.3:
            m["fallbacks"] = [f"m{rng.randrange(k + 1, count)}"]
        out.append(m)
    return out


def _observed(rng: random.Random, models: list[dict[str, Any]]) -> ObservedState:
    name = rng.choice(PROFILES)
    state = from_profile(load_profile(name).spec, name)
    gpus = list(state.gpus)
    for g in range(len(gpus)):
        if rng.random() < 0.4:
            mib = rng.randint(0, max(gpus[g].memory_free_mib - 1, 0))
            proc = GpuProcess(pid=4000 + g, used_mib=mib, kind="graphics", name="game.exe")
            gpus[g] = gpus[g].with_process(proc, mib)
        if rng.random() < 0.2:
            gpus[g] = gpus[g].model_copy(update={"temperature_c": rng.choice([82, 90])})
    instances = []
    for k, m in enumerate(models):
        if not gpus or rng.random() < 0.6:
            continue
        g = rng.randrange(len(gpus))
        mib = rng.randint(100, max(min(gpus[g].memory_free_mib, 30000), 100))
        if mib > gpus[g].memory_free_mib:
            continue
        pid = 100 + k
        label = gpus[g].label
        proc = GpuProcess(
            pid=pid, used_mib=mib, kind="compute", name="x", owner="ours", instance=m["name"]
        )
        gpus[g] = gpus[g].with_process(proc, mib)
        source = "label" if rng.random() < 0.2 else "journal"
        instances.append(
            Instance(
                model=m["name"],
                pid=pid,
                start_time=float(pid),
                source=source,
                gpus=(label,),
                used_mib=mib,
                used_by_gpu={label: mib},
            )
        )
    return state.model_copy(update={"gpus": tuple(gpus), "instances": tuple(instances)})


def _case(seed: int, index: int, gguf: Path) -> Case:
    rng = random.Random(seed * 100_000 + index)
    models = _models(rng, gguf)
    policy = {
        "foreign_processes": rng.choice(["yield", "ignore", "exclusive"]),
        "max_models_per_gpu": rng.choice([None, 1, 2]),
        "placement": rng.choice(["binpack", "spread"]),
    }
    desired = {
        "version": 1,
        "policy": {k: v for k, v in policy.items() if v is not None},
        "models": models,
    }
    observed = _observed(rng, models)

    def write(folder: Path) -> list[str]:
        (folder / "desired.yaml").write_text(dump_yaml(desired))
        (folder / "now.json").write_text(observed.model_dump_json())
        return ["plan", "desired.yaml", "--observed", "now.json", "--json"]

    return Case(f"plan-messages seed {seed} #{index}", write, check=_check)


def _check(outcome: Outcome) -> str | None:
    """A reason that calls a tie higher-priority, has a negative figure, or leaves a start's
    GPU more than its budget or less than nothing."""
    if outcome.code not in (0, 2):
        return None
    plan = json.loads(outcome.out)
    budgets = {g["label"]: g["budget_mib"] for g in plan["gpus"]}
    for a in plan["actions"]:
        reason = a["reason"]
        if "higher-priority" in reason or re.search(r"(?<![\w-])-\d", reason):
            return f"{a['model']}: {reason}"
        for label, left, budget in LEFT.findall(reason):
            if not 0 <= int(left) <= int(budget) == budgets[label]:
                return f"{a['model']}: {reason}"
    return None


def test_plan_reasons_hold_on_random_files_and_machines(tmp_path: Path) -> None:
    shape = Shape("fz", n_layer=32, n_embd=4096, n_head=32, n_head_kv=8, n_ff=14336,
                  n_vocab=8000, weights="q4_0", ctx_train=32768)  # fmt: skip
    gguf = write_gguf(tmp_path / "fz.gguf", shape, sparse=True)
    cases = [_case(13, k, gguf) for k in range(scaled(40))]
    campaign = run_campaign("plan-messages", cases, tmp_path / "runs")
    assert campaign.failures == []


def test_the_check_sees_what_it_looks_for() -> None:
    def plan(reason: str) -> Outcome:
        gpus = [{"label": "0", "budget_mib": 1000}]
        actions = [{"model": "m0", "reason": reason}]
        return Outcome(0, json.dumps({"gpus": gpus, "actions": actions}), "", 0.0)

    assert _check(plan("500 MiB (GPU 0: 500 of 1000 MiB left)")) is None
    assert _check(plan("held by higher-priority m1")) is not None
    assert _check(plan("fits (-90979/22428 MiB)")) is not None
    assert _check(plan("500 MiB (GPU 0: 500 of 2000 MiB left)")) is not None
