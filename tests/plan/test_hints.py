"""Hints are realistic: each one, written into the desired file, makes the model fit when the
plan is made again; none suggests a ctx above the model's trained context."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from reconciler.config.desired import Desired
from reconciler.config.loader import load_desired
from reconciler.config.yamlfile import dump_yaml
from reconciler.pipeline import model_facts
from reconciler.plan.model import Plan
from reconciler.plan.planner import make_plan
from reconciler.plan.reasons import HINTED_MODELS
from tests.fuzz.harness import scaled
from tests.ggufs import Shape, write_gguf
from tests.plan.test_properties import machine
from tests.plan.test_scenarios import SCENARIOS, observed_state

HINTED = [
    "smaller-kv-cache-hint",
    "cache-hint-turns-flash-attention-on",
    "ctx-hint-stays-within-the-trained-context",
    "pinned-cannot-fit",
]
# one hint: `ctx: 32768 (...)`, `cache_type: q8_0 with flash_attn: on`, `gpu_layers: auto (...)`
SETTING = re.compile(r"(\w+): (\S+)")


def _plan(case: dict[str, Any], models: list[dict[str, Any]], tmp_path: Path) -> Plan:
    file = tmp_path / "desired.yaml"
    file.write_text(dump_yaml({**case["desired"], "models": models}))
    loaded = load_desired(file)
    facts, problems, _warnings = model_facts(loaded.spec, str(file))
    observed = observed_state(case.get("observed") or {}, loaded.spec, facts)
    return make_plan(loaded.spec, observed, facts, problems)


def _hints(reason: str) -> list[dict[str, Any]]:
    """Each `or`-separated hint after `would fit with`, as the settings it changes."""
    text = reason.split("; would fit with ", 1)[1].split("; fallbacks ", 1)[0]
    out = []
    for hint in re.split(r" or (?=\w+: )", text):
        settings = dict(SETTING.findall(hint.split(" (", 1)[0]))
        out.append({k: int(v) if v.isdigit() else v for k, v in settings.items()})
    return out


@pytest.mark.parametrize("name", HINTED)
def test_each_hint_makes_the_model_fit(name: str, tmp_path: Path) -> None:
    case = YAML(typ="safe").load(SCENARIOS / f"{name}.yaml")
    models = case["desired"]["models"]
    trained = {}
    for m in models:
        shape = m.pop("shape", None)
        if shape is not None:
            m["gguf"] = str(
                write_gguf(tmp_path / f"{m['name']}.gguf", Shape(m["name"], **shape), sparse=True)
            )
            trained[m["name"]] = shape.get("ctx_train", Shape("x").ctx_train)
    blocked = [a for a in _plan(case, models, tmp_path).actions if a.action == "blocked"]
    assert blocked, name
    for action in blocked:
        hints = _hints(action.reason)
        assert hints, action.reason
        for hint in hints:
            assert hint.get("ctx", 0) <= trained[action.model], hint
            changed = [{**m, **hint} if m["name"] == action.model else m for m in models]
            again = {a.model: a for a in _plan(case, changed, tmp_path).actions}
            assert again[action.model].action == "start", (hint, again[action.model].reason)


def test_hints_are_bounded_per_plan_and_say_so(tmp_path: Path) -> None:
    """Each model's hints cost a few estimates: a plan computes them for the first
    `HINTED_MODELS` models that do not fit, and the others say that none were looked for."""
    case = YAML(typ="safe").load(SCENARIOS / "smaller-kv-cache-hint.yaml")
    model = case["desired"]["models"][0]
    gguf = write_gguf(tmp_path / "chat.gguf", Shape("chat", **model.pop("shape")), sparse=True)
    models = [
        {**model, "name": f"chat{k}", "port": 8000 + k, "gguf": str(gguf)}
        for k in range(HINTED_MODELS + 2)
    ]
    reasons = [a.reason for a in _plan(case, models, tmp_path).actions]
    assert all("; would fit with cache_type: q8_0" in r for r in reasons[:HINTED_MODELS])
    assert (
        reasons[HINTED_MODELS:]
        == [
            f"needs 12776 MiB; the most GPU 0 can give is 9680 MiB; no hints past the first "
            f"{HINTED_MODELS} models that do not fit"
        ]
        * 2
    )


SHAPES = [  # (shape, trained context): small vocabularies, so the files are written fast
    Shape(
        "s8b",
        n_layer=32,
        n_embd=4096,
        n_head=32,
        n_head_kv=8,
        n_ff=14336,
        n_vocab=8000,
        weights="q4_0",
        ctx_train=32768,
    ),
    Shape(
        "s14b",
        n_layer=48,
        n_embd=5120,
        n_head=40,
        n_head_kv=8,
        n_ff=13824,
        n_vocab=8000,
        weights="q8_0",
        ctx_train=131072,
    ),
    Shape(
        "s3b",
        n_layer=28,
        n_embd=3072,
        n_head=24,
        n_head_kv=8,
        n_ff=8192,
        n_vocab=8000,
        weights="f16",
        ctx_train=8192,
    ),
]


def _random_model(rng: random.Random, k: int, files: list[Path]) -> dict[str, Any]:
    shape = rng.randrange(len(SHAPES))
    flash = rng.choice(["on", "off", "auto"])
    return {
        "name": f"m{k}",
        "gguf": str(files[shape]),
        "port": 8000 + k,
        "priority": rng.randrange(3),
        "ctx": rng.choice([4096, 8192, 16384, 32768, 65536, 131072, 262144]),
        "parallel": rng.choice([1, 1, 2, 4]),
        "cache_type": "f16" if flash == "off" else rng.choice(["f16", "q8_0", "q4_0"]),
        "flash_attn": flash,
        "gpu_layers": rng.choice(["all", "all", "auto", 20]),
        "split": rng.choice(["auto", "never"]),
    }


def test_random_hints_make_their_model_fit(tmp_path: Path) -> None:
    """On random machines and files (seeded), every hint of every blocked model, written into
    the file, makes that model start when planned again; no ctx hint exceeds the trained
    context."""
    rng = random.Random(1313)
    files = [write_gguf(tmp_path / f"{s.name}.gguf", s, sparse=True) for s in SHAPES]
    trained = {str(f): s.ctx_train for f, s in zip(files, SHAPES, strict=True)}
    tried = 0
    for index in range(scaled(40)):
        totals = [rng.choice([8192, 12288, 24576, 49152]) for _ in range(rng.randint(1, 3))]
        observed = {
            "gpus": totals,
            "foreign": [rng.choice([0, 0, 600, 4000]) for _ in totals],
            "host_available_mib": rng.choice([4000, 16000, 60000]),
        }
        models = [_random_model(rng, k, files) for k in range(rng.randint(1, 3))]
        plan = _random_plan(models, observed, tmp_path)
        for action in plan.actions:
            if action.action != "blocked" or "; would fit with " not in action.reason:
                continue
            model = next(m for m in models if m["name"] == action.model)
            for hint in _hints(action.reason):
                tried += 1
                assert hint.get("ctx", 0) <= trained[model["gguf"]], (index, hint)
                changed = [{**m, **hint} if m is model else m for m in models]
                again = {a.model: a for a in _random_plan(changed, observed, tmp_path).actions}
                assert again[action.model].action == "start", (
                    index,
                    hint,
                    action.reason,
                    again[action.model].reason,
                )
    print(f"random hints: {scaled(40)} plans, {tried} hints re-planned")
    assert tried, "no hint was given: the generator no longer makes models that do not fit"


def _random_plan(models: list[dict[str, Any]], observed: dict[str, Any], tmp_path: Path) -> Plan:
    desired = Desired.model_validate({"version": 1, "models": models})
    facts, problems, _warnings = model_facts(desired, tmp_path / "desired.yaml")
    state = machine(observed["gpus"], observed["foreign"])
    host = state.host.model_copy(update={"ram_available_mib": observed["host_available_mib"]})
    return make_plan(desired, state.model_copy(update={"host": host}), facts, problems)
