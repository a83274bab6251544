"""Fuzzing snapshots (`--observed`): mutated `reconcile status --json` output through `plan` and
`status`.

The seeds are real snapshots: every bundled profile as `status --profile X --json` prints it,
and machines observed through the fake NVML (MIG slices, a lost GPU, processes of ours with
their journal instances). Each input mutates one to three things: a number (negative, zero,
huge, a float, a string), a type, a duplicate GPU or process, a deletion, JSON no reader
agrees on (NaN, Infinity, a 5000-digit number, nesting thousands deep), thousands of GPUs or
processes, or a plausible change (memory in use, foreign programs, temperatures) that a
machine could really show; or text no terminal takes (a lone surrogate, ESC, 5000 characters).

They run through `plan` (the README's workstation example, no model required:
`tests.fuzz.plans.write_desired`) and `status`. Besides the runner's judgement (no traceback,
bounded time, a message naming the snapshot), every snapshot that is accepted must give a sane
plan: no GPU planned over its budget, no GPU twice, no negative figure (`plans.SanePlan`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from reconciler.observe.journal import JournalEntry
from reconciler.observe.observer import Observer
from tests.fuzz.harness import Case, run_campaign, run_cli, scaled
from tests.fuzz.plans import Mutation, SanePlan, leaves, mutate, write_desired
from tests.observe.fake_nvml import MIB, FakeGpu, FakeNvml

PROFILES = ["rtx4090", "2x3090", "4090+3060", "a100-80g", "rtx3060-12g", "cpu-only"]
SNAPSHOT = "now.json"
Data = dict[str, Any]


def _observed() -> list[str]:
    """Machines seen through the fake NVML: MIG, a lost GPU, ours and foreign processes."""
    me = os.getpid()
    mig = [FakeGpu(name="A100 MIG 3g.40gb", uuid="MIG-0", total_mib=40192, used_mib=5000)]
    busy = [
        FakeGpu(compute=[(me, 2048 * MIB)], graphics=[(os.getppid(), None)]),
        FakeGpu(uuid="GPU-a100", name="NVIDIA A100-SXM4-80GB", total_mib=81920, mig=mig),
        FakeGpu(uuid="GPU-quiet", temperature=82, compute=[(4242, 9000 * MIB)]),
    ]
    journal = [JournalEntry(model="chat", pid=me, start_time=1.0, unit="reconciler-chat")]
    ours = Observer(FakeNvml([FakeGpu(compute=[(me, 6000 * MIB)])])).observe(journal)
    return [Observer(FakeNvml(busy)).observe().to_json(), ours.to_json()]


def seeds(folder: Path) -> list[Data]:
    """Every seed as data: the profiles as `status --json` prints them, and observed ones."""
    out = []
    for name in PROFILES:
        outcome = run_cli(["status", "--profile", name, "--json"])
        assert outcome.code == 0, outcome.err
        out.append(json.loads(outcome.out))
    out += [json.loads(text) for text in _observed()]
    folder.mkdir(parents=True, exist_ok=True)
    return out


# -- mutations: each changes `data` in place, or returns the text to write instead -------------


def _set(data: Data, path: tuple[Any, ...], value: Any) -> None:
    node: Any = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _delete(data: Data, path: tuple[Any, ...]) -> None:
    node: Any = data
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]


NUMBERS: list[Callable[[random.Random, Any], Any]] = [
    lambda _r, x: -x if isinstance(x, int | float) and not isinstance(x, bool) else -1,
    lambda _r, _x: 0,
    lambda _r, _x: -1,
    lambda r, _x: 10 ** r.randint(6, 40),
    lambda r, _x: -(10 ** r.randint(6, 40)),
    lambda _r, _x: 2**63,
    lambda r, x: x * r.choice([2, 10, 1000]) if isinstance(x, int) else 10**9,
    lambda r, _x: r.randint(0, 100_000),
    lambda r, _x: r.uniform(-1e6, 1e6),
    lambda _r, _x: 1e308,
    lambda r, _x: str(r.randint(0, 50_000)),
    lambda _r, _x: "lots",
]
TYPES: list[Any] = [None, True, "", "x", [], {}, [1, 2], {"a": 1}, 3.5]


def number_mutation(r: random.Random, data: Data) -> str | None:
    numeric = [(p, v) for p, v in leaves(data) if isinstance(v, int | float)]
    if numeric:
        path, value = r.choice(numeric)
        _set(data, path, r.choice(NUMBERS)(r, value))
    return None


def type_mutation(r: random.Random, data: Data) -> str | None:
    path, _value = r.choice(list(leaves(data)))
    _set(data, path, copy.deepcopy(r.choice(TYPES)))
    return None


def deletion(r: random.Random, data: Data) -> str | None:
    path, _value = r.choice(list(leaves(data)))
    _delete(data, path)
    return None


def duplicate(r: random.Random, data: Data) -> str | None:
    gpus = data.get("gpus") or []
    if not gpus:
        return None
    gpu = r.choice(gpus)
    choice = r.randrange(4)
    if choice == 0:  # the same GPU twice
        gpus.append(copy.deepcopy(gpu))
    elif choice == 1 and len(gpus) > 1:  # one index or UUID on two GPUs
        other = r.choice(gpus)
        key = r.choice(["index", "uuid"])
        gpu[key] = other[key]
    elif choice == 2 and gpu["processes"]:  # a process twice
        gpu["processes"].append(copy.deepcopy(r.choice(gpu["processes"])))
    else:  # a new GPU that claims an old index
        twin = copy.deepcopy(gpu)
        twin["uuid"] = f"GPU-twin-{r.randrange(1000)}"
        gpus.append(twin)
    return None


def many(r: random.Random, data: Data) -> str | None:
    gpus = data.get("gpus") or []
    if not gpus:
        return None
    count = r.choice([20, 65, 513, 3000])
    if r.random() < 0.5:
        base = gpus[0]
        distinct = r.random() < 0.7
        data["gpus"] = [
            {**base, "index": i, "uuid": f"GPU-{i}"} if distinct else copy.deepcopy(base)
            for i in range(count)
        ]
    else:
        gpu = r.choice(gpus)
        proc = {"pid": 1, "used_mib": 1, "kind": "compute", "owner": "foreign"}
        gpu["processes"] = [{**proc, "pid": 100 + i} for i in range(count)]
    return None


def plausible(r: random.Random, data: Data) -> str | None:
    """A change a machine could really show: memory in use, programs, heat."""
    for gpu in data.get("gpus") or []:
        total = gpu["memory_total_mib"]
        if total <= 0:
            continue
        used = r.randint(0, total)
        gpu.update(memory_used_mib=used, memory_free_mib=total - used, memory_reserved_mib=None)
        held = r.randint(0, used)
        if r.random() < 0.6:
            game = {"pid": r.randint(2, 4_000_000), "used_mib": held, "kind": "graphics"}
            gpu["processes"] = [*gpu["processes"][:1], {**game, "name": "game"}]
            if sum(p.get("used_mib") or 0 for p in gpu["processes"]) > total:
                gpu["processes"] = [gpu["processes"][-1]]
        gpu["temperature_c"] = r.choice([None, 40, 66, 81, 86, 150])
    return None


def nonstandard(r: random.Random, data: Data) -> str | None:
    """JSON text no two readers agree on."""
    text = json.dumps(data, indent=2)
    numbers = [p for p, v in leaves(data) if isinstance(v, int) and not isinstance(v, bool)]
    marker = 7_777_777_777_777
    if numbers:
        _set(data, r.choice(numbers), marker)
        text = json.dumps(data, indent=2)
    odd = r.choice(
        ["NaN", "Infinity", "-Infinity", "1e999", "9" * 5000, "-" + "1" * 4000, "1" * 25]
    )
    if r.random() < 0.3:
        depth = r.choice([40, 900, 5000])
        odd = "[" * depth + "]" * depth
    return text.replace(str(marker), odd)


def as_yaml(_r: random.Random, data: Data) -> str | None:
    """The same snapshot written as YAML (flow style: JSON is YAML)."""
    return "# a snapshot\n" + json.dumps(data)


ODD_TEXT = ["RTX \udcff", "\ud800", "a\x1b[2Jb", "nul\x00", "c1\x9b", "x" * 5000, "tab\tok"]


def odd_text(r: random.Random, data: Data) -> str | None:
    """A string no terminal or JSON writer takes: a lone surrogate, a control character, a very
    long one; or too many notes, or an instance listed twice."""
    choice = r.randrange(4)
    strings = [p for p, v in leaves(data) if isinstance(v, str)]
    if choice == 0 and strings:
        _set(data, r.choice(strings), r.choice(ODD_TEXT))
    elif choice == 1:
        data[r.choice(["driver", "gpu_note", "source"])] = r.choice(ODD_TEXT)
    elif choice == 2:
        data["notes"] = ["a note"] * r.choice([10, 257, 5000])
    else:
        instance = {"model": "chat", "pid": 4242, "start_time": 1.0, "gpus": ["0"]}
        data["instances"] = [*data.get("instances", []), instance, dict(instance)]
    return None


def truncation(r: random.Random, data: Data) -> str | None:
    text = json.dumps(data, indent=2)
    return text[: r.randrange(len(text))]


MUTATIONS: list[Mutation] = [
    ("number", number_mutation, 8),
    ("type", type_mutation, 4),
    ("deletion", deletion, 3),
    ("duplicate", duplicate, 4),
    ("many", many, 1),
    ("plausible", plausible, 12),
    ("nonstandard", nonstandard, 2),
    ("yaml", as_yaml, 1),
    ("truncation", truncation, 1),
    ("text", odd_text, 2),
]


def snapshot_cases(bases: list[Data], count: int, seed: int, sane: SanePlan) -> Iterator[Case]:
    r = random.Random(seed)
    for index in range(count):
        base = r.choice(bases)
        text, names = mutate(r, base, MUTATIONS)

        def write(work: Path, text: str = text, index: int = index) -> list[str]:
            (work / SNAPSHOT).write_text(text)
            if index % 3 == 2:
                return ["status", "--observed", SNAPSHOT]
            return ["plan", write_desired(work), "--observed", SNAPSHOT, "--json"]

        check = sane if index % 3 != 2 else None
        yield Case(f"seed {seed} #{index} {names}", write, names=SNAPSHOT, check=check)


def test_mutated_snapshots(tmp_path: Path) -> None:
    bases = seeds(tmp_path / "seeds")
    folder = tmp_path / "runs"
    sane = SanePlan()
    campaign = run_campaign("snapshots", snapshot_cases(bases, scaled(150), 13, sane), folder)
    campaign.name += f" ({sane.summary()})"
    assert campaign.failures == []


def test_the_plan_check_sees_nonsense(tmp_path: Path) -> None:
    argv = ["plan", write_desired(tmp_path), "--profile", "rtx4090", "--json"]
    with contextlib.chdir(tmp_path):
        outcome = run_cli(argv)
    sane = SanePlan()
    assert (outcome.code, sane(outcome)) == (0, None)
    plan = json.loads(outcome.out)
    gpu = plan["gpus"][0]
    plan["gpus"] = [{**gpu, "budget_mib": 1000}, gpu]
    plan["actions"][0]["estimate_mib"]["host"] = -90979
    bad = dataclasses.replace(outcome, out=json.dumps(plan))
    assert sane(bad) == (
        "a nonsense plan: negative: .actions[0].estimate_mib.host = -90979; a GPU twice: "
        "['0', '0'] ['GPU-profile-rtx4090-0', 'GPU-profile-rtx4090-0']; GPU 0: 17831 over 1000"
    )
    assert sane.summary() == "2 plans checked, 1 nonsense"
