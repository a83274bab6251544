"""Saved plans: `plan -o FILE` writes what `Plan.model_validate_json` loads back unchanged, for
every kind of action; a path it cannot write is refused in one line; `load_saved_plan` says
in one line what is wrong with a file that is not a plan it can read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.errors import ConfigError
from reconciler.pipeline import Pipeline
from reconciler.plan.model import ACTIONS, Plan
from reconciler.planfile import load_saved_plan
from reconciler.state import GpuProcess, Instance
from tests.plan.simulate import carry_out

BEFORE = """version: 1
models:
  - {name: keep, backend: command, argv: [/bin/keep], vram_mib: 1000, port: 9001}
  - {name: again, backend: command, argv: [/bin/again], vram_mib: 1000, port: 9002}
  - {name: gone, backend: command, argv: [/bin/gone], vram_mib: 1000, port: 9003}
"""
AFTER = """version: 1
models:
  - {name: keep, backend: command, argv: [/bin/keep], vram_mib: 1000, port: 9001}
  - {name: again, backend: command, argv: [/bin/again, --new], vram_mib: 1000, port: 9002}
  - {name: new, backend: command, argv: [/bin/new], vram_mib: 1000, port: 9004}
  - {name: huge, backend: command, argv: [/bin/huge], vram_mib: 90000, port: 9005}
"""


def every_kind(tmp_path: Path) -> tuple[Path, Path]:
    """A desired file and a snapshot that plan a start, keep, restart, stop, blocked and
    unmanaged: three instances started as BEFORE asks, one only its label says is ours,
    then the desired file changed to AFTER."""
    desired = tmp_path / "desired.yaml"
    desired.write_text(BEFORE)
    pipeline = Pipeline(profile="rtx4090")
    running = carry_out(pipeline.run(desired), pipeline.observe())
    gpu = running.gpus[0]
    stray = GpuProcess(pid=7777, used_mib=500, kind="compute", owner="ours", instance="stray")
    label_only = Instance(model="stray", pid=7777, start_time=7.0, source="label", gpus=("0",))
    running = running.model_copy(
        update={
            "gpus": (gpu.model_copy(update={"processes": (*gpu.processes, stray)}),),
            "instances": (*running.instances, label_only),
        }
    )
    snapshot = tmp_path / "now.json"
    snapshot.write_text(running.to_json())
    desired.write_text(AFTER)
    return desired, snapshot


def test_a_saved_plan_loads_back_unchanged_with_every_kind_of_action(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desired, snapshot = every_kind(tmp_path)
    saved = tmp_path / "plan.json"
    argv = ["plan", str(desired), "--observed", str(snapshot), "-o", str(saved)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"Saved the plan to {saved}" in out
    assert "reconcile apply` carries it out" not in out  # apply is not there yet
    plan = Plan.model_validate_json(saved.read_text())
    kinds = {a.model: a.action for a in plan.actions}
    assert kinds == {
        "keep": "keep",
        "again": "restart",
        "new": "start",
        "huge": "blocked",
        "gone": "stop",
        "stray": "unmanaged",
    }
    assert plan.to_json() + "\n" == saved.read_text()
    assert load_saved_plan(saved) == plan
    assert plan == Pipeline(observed=str(snapshot)).run(desired)
    restart = next(a for a in plan.actions if a.action == "restart")
    assert restart.launch is not None
    assert restart.instance is not None
    assert restart.instance.known_by == "journal"
    assert plan.inputs is not None
    assert plan.inputs.observed == plan.observed
    assert set(json.loads(saved.read_text())["summary"]) == set(ACTIONS)


def test_the_json_view_is_the_saved_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desired, snapshot = every_kind(tmp_path)
    saved = tmp_path / "plan.json"
    assert (
        main(["plan", str(desired), "--observed", str(snapshot), "--json", "-o", str(saved)]) == 0
    )
    assert capsys.readouterr().out == saved.read_text()


@pytest.mark.parametrize(
    ("target", "words"),
    [
        (".", "is a directory; give the plan a file name, e.g. -o "),
        ("no-such-folder/plan.json", "the folder no-such-folder does not exist"),
        ("desired.yaml/plan.json", "there: desired.yaml is not a folder"),
    ],
)
def test_plan_o_refuses_a_path_it_cannot_write_in_one_line(
    target: str,
    words: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("desired.yaml").write_text(BEFORE)
    assert main(["plan", "desired.yaml", "--profile", "rtx4090", "-o", target]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(f"{target}: ")
    assert words in err
    assert "Traceback" not in err


def saved_plan(tmp_path: Path) -> Path:
    desired = tmp_path / "desired.yaml"
    desired.write_text(BEFORE)
    saved = tmp_path / "plan.json"
    assert main(["plan", str(desired), "--profile", "rtx4090", "-o", str(saved)]) == 0
    return saved


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_saved_plan(path)
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    return message


def test_a_missing_saved_plan(tmp_path: Path) -> None:
    missing = tmp_path / "plan.json"
    assert load_error(missing) == f"{missing}: no such file; check the path"


def test_a_saved_plan_that_is_not_json_points_at_line_and_column(tmp_path: Path) -> None:
    saved = saved_plan(tmp_path)
    lines = saved.read_text().splitlines()
    lines[2] = lines[2].rstrip(",")  # a comma missing at the end of line 3
    saved.write_text("\n".join(lines))
    assert load_error(saved) == (
        f"{saved}:4:3: not a saved plan: JSON syntax error: Expecting ',' delimiter; "
        f"run `reconcile plan -o {saved}` again"
    )


def test_a_saved_plan_of_another_format(tmp_path: Path) -> None:
    saved = saved_plan(tmp_path)
    data = json.loads(saved.read_text())
    data["format_version"] = 1
    saved.write_text(json.dumps(data))
    assert load_error(saved) == (
        f"{saved}: format_version: a plan of format 1; this reconcile reads format 2; "
        f"run `reconcile plan -o {saved}` again"
    )


def test_a_file_that_is_no_plan_at_all(tmp_path: Path) -> None:
    other = tmp_path / "now.json"
    other.write_text("[1, 2]")
    assert load_error(other).startswith(f"{other}:1:1: not a saved plan (it has no format_version)")


def test_a_damaged_saved_plan(tmp_path: Path) -> None:
    saved = saved_plan(tmp_path)
    data = json.loads(saved.read_text())
    data["actions"][0]["action"] = "launch"
    data["summary"]["start"] -= 1  # the summary agrees: the action itself is wrong
    saved.write_text(json.dumps(data))
    message = load_error(saved)
    assert message.startswith(f"{saved}: actions[0].action: the saved plan is damaged: input ")
    assert message.endswith(f"; run `reconcile plan -o {saved}` again")


def test_a_saved_plan_whose_summary_disagrees_with_its_actions(tmp_path: Path) -> None:
    saved = saved_plan(tmp_path)
    data = json.loads(saved.read_text())
    data["summary"]["stop"] = 5
    saved.write_text(json.dumps(data))
    assert "the saved plan is damaged: value error, summary " in load_error(saved)
