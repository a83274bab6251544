"""Fuzzing hardware profiles: mutated bundled profiles through `check --profile PATH` and
`plan --profile PATH`.

Each input starts from a bundled profile and changes one to three things: a number (negative,
zero, huge, a float, NaN, a string), a type, a deletion, a duplicate GPU or UUID, baseline
programs holding more than the card, hundreds or thousands of GPUs or programs, or a plausible
machine (other sizes, other programs) that must be accepted. Some are written as YAML text
with what only YAML has: `.nan`, `.inf`, a 5000-digit number, nesting thousands deep.

Besides the runner's judgement (no traceback, bounded time, a message naming the profile), a
plan made on an accepted profile must make sense (`tests.fuzz.plans.SanePlan`); the desired
file is the README's workstation example with no model required, so that a profile too small
for it is a plan, not an error about the desired file.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from reconciler.config.loader import bundled_profiles
from tests.fuzz.harness import Case, run_campaign, scaled
from tests.fuzz.plans import Mutation, SanePlan, leaves, mutate, write_desired

PROFILE = "profile.yaml"
Data = dict[str, Any]


def bases() -> list[Data]:
    """Every bundled profile as plain data."""
    yaml = YAML(typ="safe", pure=True)
    return [yaml.load(p.read_text()) for p in sorted(bundled_profiles().glob("*.yaml"))]


def _parent(data: Data, path: tuple[Any, ...]) -> Any:
    node: Any = data
    for part in path[:-1]:
        node = node[part]
    return node


def number(r: random.Random, data: Data) -> str | None:
    numeric = [p for p, v in leaves(data) if isinstance(v, int | float)]
    if numeric:
        path = r.choice(numeric)
        value = _parent(data, path)[path[-1]]
        _parent(data, path)[path[-1]] = r.choice(
            [-value, 0, -1, 10 ** r.randint(6, 40), 2**63, value * 1000, 0.5, 1e308, "12 GB"]
        )
    return None


def type_change(r: random.Random, data: Data) -> str | None:
    path, _value = r.choice(list(leaves(data)))
    _parent(data, path)[path[-1]] = copy.deepcopy(r.choice([None, True, "", [], {}, [1], 3.5]))
    return None


def deletion(r: random.Random, data: Data) -> str | None:
    path, _value = r.choice(list(leaves(data)))
    del _parent(data, path)[path[-1]]
    return None


def duplicate(r: random.Random, data: Data) -> str | None:
    gpus = data.get("gpus") or []
    if gpus:
        gpu = r.choice(gpus)
        gpu["uuid"] = "GPU-fuzz"
        gpus.append(copy.deepcopy(gpu))
    return None


def crowded(r: random.Random, data: Data) -> str | None:
    gpus = data.get("gpus") or []
    if not gpus:
        return None
    gpu = r.choice(gpus)
    choice = r.randrange(3)
    if choice == 0:  # programs holding more than the card
        gpu["baseline"] = [{"name": "game", "used_mib": gpu["memory_mib"] + r.randint(1, 9999)}]
    elif choice == 1:
        gpu["baseline"] = [{"name": f"p{i}", "used_mib": 1} for i in range(r.choice([65, 5000]))]
    else:
        data["gpus"] = [copy.deepcopy(gpu) for _ in range(r.choice([16, 65, 3000]))]
    return None


def plausible(r: random.Random, data: Data) -> str | None:
    """A machine that could exist: other sizes, other programs, more or fewer cards."""
    gpus = data.get("gpus") or []
    for gpu in gpus:
        gpu["memory_mib"] = r.choice([6144, 8192, 12288, 16376, 24564, 49140, 81559, 196608])
        held = r.randint(0, gpu["memory_mib"] // 2)
        gpu["baseline"] = [{"name": "game", "used_mib": held, "type": "graphics"}]
    if gpus and r.random() < 0.3:
        data["gpus"] = [copy.deepcopy(gpus[0]) for _ in range(r.randint(1, 8))]
    data["host"] = {"ram_mib": r.choice([8192, 65536, 1 << 20]), "cpus": r.randint(1, 256)}
    return None


def yaml_only(r: random.Random, data: Data) -> str | None:
    """What only YAML text can say, in place of a number."""
    marker = 7_777_777_777_777
    numeric = [p for p, v in leaves(data) if isinstance(v, int) and not isinstance(v, bool)]
    if not numeric:
        return None
    path = r.choice(numeric)
    _parent(data, path)[path[-1]] = marker
    depth = r.choice([40, 3000])
    odd = r.choice(
        [".nan", ".inf", "-.inf", "9" * 5000, "0x" + "f" * 3000, "[" * depth + "]" * depth]
    )
    return json.dumps(data, indent=2).replace(str(marker), odd)


MUTATIONS: list[Mutation] = [
    ("number", number, 6),
    ("type", type_change, 3),
    ("deletion", deletion, 3),
    ("duplicate", duplicate, 2),
    ("crowded", crowded, 2),
    ("plausible", plausible, 8),
    # What only YAML text says (.nan, 5000 digits, nesting 3000 deep): the YAML reader's bounds.
    ("yaml", yaml_only, 2),
]


def profile_cases(profiles: list[Data], count: int, seed: int, sane: SanePlan) -> Iterator[Case]:
    r = random.Random(seed)
    for index in range(count):
        text, names = mutate(r, r.choice(profiles), MUTATIONS)

        def write(work: Path, text: str = text, index: int = index) -> list[str]:
            (work / PROFILE).write_text("# a fuzzed profile\n" + text)
            desired = write_desired(work)
            if index % 2:
                return ["check", desired, "--profile", PROFILE]
            return ["plan", desired, "--profile", PROFILE, "--json"]

        check = sane if index % 2 == 0 else None
        yield Case(f"seed {seed} #{index} {names}", write, names=PROFILE, check=check)


def test_mutated_profiles(tmp_path: Path) -> None:
    sane = SanePlan()
    cases = profile_cases(bases(), scaled(120), 17, sane)
    campaign = run_campaign("profiles", cases, tmp_path)
    campaign.name += f" ({sane.summary()})"
    assert campaign.failures == []
