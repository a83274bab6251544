"""Resolved launches: a hash from a canonical form, differences without secret values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.config.loader import load_desired
from reconciler.launch import Launch, env_digests, fractions
from reconciler.plan.planner import make_plan
from reconciler.plan.views import plan_json, plan_text
from tests.plan.test_scenarios import observed_state

SECRET = "s3cr3t-value-that-must-not-leak"


def launch(**update: object) -> Launch:
    base = Launch(
        program="llama-server",
        model="chat",
        variant="chat",
        backend="llama.cpp",
        gguf="/m/chat.gguf",
        ctx=8192,
        parallel=1,
        port=8081,
        env=env_digests({"A": "1", "B": "2"}),
        extra_args=("--threads", "8"),
        gpus=("0",),
        gpu_uuids=("GPU-a",),
    )
    return Launch.model_validate({**base.model_dump(), **update})


def test_env_order_list_form_and_placement_do_not_change_the_hash() -> None:
    a = launch()
    b = launch(env=env_digests({"B": "2", "A": "1"}), extra_args=["--threads", "8"])
    assert a.hash == b.hash
    assert a.hash == launch(gpus=("1",), gpu_uuids=("GPU-b",)).hash  # a move, not a restart
    assert a.hash != launch(ctx=16384).hash


def test_a_saved_launch_hashes_the_same_after_a_round_trip() -> None:
    a = launch(tensor_split=fractions((21618.0, 22118.0)))
    assert Launch.model_validate_json(a.model_dump_json()).hash == a.hash
    assert a.tensor_split == (0.4943, 0.5057)


def test_differences_name_fields_and_never_show_env_values() -> None:
    old = launch(env=env_digests({"API_KEY": SECRET, "GONE": "x"}))
    new = launch(ctx=16384, env=env_digests({"API_KEY": "other", "NEW": "y"}))
    assert new.differences(old) == [
        "ctx 8192 -> 16384",
        "env API_KEY changed (value not shown)",
        "env GONE removed",
        "env NEW added",
    ]
    assert SECRET not in old.model_dump_json()


def test_defaults_spelled_out_or_left_out_give_the_same_launch(tmp_path: Path) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text(
        "version: 1\nmodels:\n  - {name: chat, backend: command, argv: [/bin/c], vram_mib: 900}\n"
    )
    spelled = tmp_path / "spelled.yaml"
    spelled.write_text(
        "version: 1\nmodels:\n  - {name: chat, backend: command, argv: ['/bin/c'], "
        "vram_mib: 900, host: 127.0.0.1, env: {}, extra_args: [], priority: 0}\n"
    )
    observed = observed_state({})
    hashes = set()
    for file in (plain, spelled):
        (action,) = make_plan(load_desired(file).spec, observed, {}).actions
        assert action.launch is not None
        hashes.add(action.launch.hash)
    assert len(hashes) == 1


def test_a_secret_from_the_environment_never_reaches_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHAT_KEY", SECRET)
    file = tmp_path / "d.yaml"
    file.write_text(
        "version: 1\nmodels:\n  - {name: chat, backend: command, argv: [/bin/c], vram_mib: 900,"
        " env: {API_KEY: '${env.CHAT_KEY}'}}\n"
    )
    plan = make_plan(load_desired(file).spec, observed_state({}), {})
    text = plan_json(plan) + "\n".join(plan_text(plan))
    assert SECRET not in text
    (action,) = json.loads(plan_json(plan))["actions"]
    assert list(action["launch"]["env"]) == ["API_KEY"]
    assert action["launch"]["gpu_uuids"] == ["GPU-profile-rtx4090-0"]
    assert action["launch"]["program"] == "/bin/c"
