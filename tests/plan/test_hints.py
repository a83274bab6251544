"""Hints are realistic: each one, written into the desired file, makes the model fit when the
plan is made again; none suggests a ctx above the model's trained context."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from reconciler.config.loader import load_desired
from reconciler.config.yamlfile import dump_yaml
from reconciler.pipeline import model_facts
from reconciler.plan.model import Plan
from reconciler.plan.planner import make_plan
from reconciler.plan.reasons import HINTED_MODELS
from tests.ggufs import Shape, write_gguf
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
