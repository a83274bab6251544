"""A saved plan is stale when anything it was computed from changed: each input is named on
its own (the desired file, the lock file, a model file, the tool's version, the machine), and
an unchanged world gives no message."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reconciler import pipeline
from reconciler.cli import main
from reconciler.pipeline import Pipeline
from reconciler.plan.model import Plan
from reconciler.plan.stale import stale
from reconciler.planfile import load_saved_plan
from tests.ggufs import Shape, write_gguf

SMALL = Shape("small", n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256, n_vocab=500)
AGAIN = "run `reconcile plan -o plan.json` again"


class World:
    """A desired file with a GGUF model and a command model, its lock file, a snapshot of the
    machine, and a plan saved against them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "models").mkdir()
        self.gguf = write_gguf(root / "models" / "chat.gguf", SMALL)
        self.desired = root / "desired.yaml"
        self.desired.write_text(
            "version: 1\nmodels:\n"
            "  - {name: chat, gguf: models/chat.gguf, priority: 100, port: 8081}\n"
            "  - {name: tts, backend: command, argv: [/bin/tts], vram_mib: 600, port: 8082}\n"
        )
        self.lock = root / "desired.lock.yaml"
        assert main(["lock", str(self.desired)]) == 0
        self.snapshot = root / "now.json"
        self.snapshot.write_text(Pipeline(profile="rtx4090").observe().to_json())
        self.saved = root / "plan.json"
        argv = ["plan", str(self.desired), "--observed", str(self.snapshot), "-o", "plan.json"]
        assert main(argv) == 0

    def stale(self) -> list[str]:
        saved: Plan = load_saved_plan(self.saved)
        fresh = Pipeline(observed=str(self.snapshot)).inputs(self.desired)
        return stale(saved, fresh, plan_file="plan.json")


@pytest.fixture
def world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> World:
    monkeypatch.chdir(tmp_path)
    made = World(tmp_path)
    capsys.readouterr()
    return made


def test_nothing_changed(world: World) -> None:
    assert world.stale() == []


def test_nothing_changed_but_the_files_times(world: World) -> None:
    for path in (world.desired, world.lock, world.gguf, world.snapshot):
        os.utime(path, ns=(1, 1))  # other identities, the same bytes
    assert world.stale() == []


def test_the_desired_file_changed(world: World) -> None:
    world.desired.write_text(world.desired.read_text().replace("priority: 100", "priority: 90"))
    assert world.stale() == [
        f"the desired file (or a variable it reads) changed since the plan was saved; {AGAIN}"
    ]


def test_a_variable_the_desired_file_reads_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TTS_KEY", "tts-secret-one")
    monkeypatch.chdir(tmp_path)
    world = World(tmp_path)
    world.desired.write_text(
        world.desired.read_text().replace("port: 8082}", "port: 8082, env: {K: '${env.TTS_KEY}'}}")
    )
    assert (
        main(["plan", str(world.desired), "--observed", str(world.snapshot), "-o", "plan.json"])
        == 0
    )
    capsys.readouterr()
    assert world.stale() == []
    monkeypatch.setenv(
        "TTS_KEY", "tts-secret-two"
    )  # the file is the same; what it resolves to is not
    assert world.stale() == [
        f"the desired file (or a variable it reads) changed since the plan was saved; {AGAIN}"
    ]
    assert "tts-secret" not in world.saved.read_text()


def test_the_lock_file_changed(world: World) -> None:
    world.lock.write_text(world.lock.read_text() + "# edited by hand\n")
    assert world.stale() == [f"the lock file changed since the plan was saved; {AGAIN}"]


def test_the_lock_file_was_removed(world: World) -> None:
    world.lock.unlink()
    assert world.stale() == [f"the lock file was removed since the plan was saved; {AGAIN}"]


def test_a_model_file_changed(world: World) -> None:
    write_gguf(world.gguf, Shape("small", n_layer=3, n_embd=128, n_head=4, n_ff=256, n_vocab=500))
    assert world.stale() == [
        "the model file of chat changed since the plan was saved (its GGUF, or its entry in "
        f"the lock file, gives other facts); {AGAIN}"
    ]


def test_the_tool_changed(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = load_saved_plan(world.saved)
    assert saved.inputs is not None
    monkeypatch.setattr(pipeline, "tool_version", lambda: "9.9.9")
    assert world.stale() == [
        f"the plan was saved by reconcile {saved.inputs.tool_version} and this is reconcile "
        f"9.9.9; {AGAIN} with this version"
    ]


def test_the_machine_changed(world: World) -> None:
    state = json.loads(world.snapshot.read_text())
    game = {"pid": 4242, "used_mib": 6000, "kind": "graphics", "name": "game", "owner": "foreign"}
    state["gpus"][0]["processes"].append(game)
    world.snapshot.write_text(json.dumps(state))
    (line,) = world.stale()
    assert line.startswith(
        "the machine changed since the plan was saved (its GPUs, the programs holding their "
        "memory or the instances running; observed "
    )
    assert line.endswith(AGAIN)


def test_several_inputs_changed_are_each_named(world: World) -> None:
    world.desired.write_text(world.desired.read_text().replace("priority: 100", "priority: 90"))
    world.lock.unlink()
    assert len(world.stale()) == 2


def test_a_plan_that_records_no_inputs(world: World) -> None:
    saved = load_saved_plan(world.saved).model_copy(update={"inputs": None})
    fresh = Pipeline(observed=str(world.snapshot)).inputs(world.desired)
    assert stale(saved, fresh) == [
        "the saved plan does not record what it was computed from; "
        "run `reconcile plan -o FILE` again"
    ]
