"""`reconcile plan` as a user runs it: views, saved plans, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from reconciler.cli import main
from reconciler.plan.model import Plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "desired" / "workstation.yaml")
MIXED = str(ROOT / "desired" / "mixed-backends.yaml")
DUAL = str(ROOT / "desired" / "dual-gpu.yaml")


def test_text_plan_of_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", EXAMPLE, "--profile", "rtx4090"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Planned against profile:rtx4090 (observed ")
    legend = "Legend: + start, - stop, -/+ restart, ~ move, ! blocked, ? unmanaged; unmarked: keep."
    assert legend in out
    starts = [line.split()[2] for line in out if line.strip().startswith("+ start")]
    assert starts == ["chat", "embed", "coder"]
    assert out[-1] == "Plan: 3 to start."


@pytest.mark.parametrize(
    ("desired", "profile"),
    [
        (EXAMPLE, "rtx4090"),  # three starts sharing one card: what each leaves
        (EXAMPLE, "rtx3060-12g"),  # a fallback start: which variant runs and why
        (MIXED, "rtx3060-12g"),  # blocked: too big for the card; the room and its holders
        (MIXED, "2x3090"),  # blocked models beside a split
        (DUAL, "rtx4090"),  # partial offload, a pin naming no GPU here
    ],
    ids=["workstation-4090", "workstation-3060", "mixed-3060", "mixed-2x3090", "dual-4090"],
)
def test_the_text_plan_reads_as_a_person_needs_it(
    desired: str, profile: str, capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion
) -> None:
    """Every line of the human plan, pinned: each start with its own estimate and what is left
    where it goes, each blocked model with the room left now and its holders (the README's
    plan section quotes workstation-3060 and mixed-3060)."""
    assert main(["plan", desired, "--profile", profile]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"Planned against profile:{profile} (observed ")
    assert lines[1:] == snapshot


def test_json_saved_plan_and_detailed_exitcode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "plan.json"
    code = main(
        [
            "plan",
            EXAMPLE,
            "--profile",
            "rtx3060-12g",
            "--json",
            "-o",
            str(saved),
            "--detailed-exitcode",
        ]
    )
    assert code == 2
    data = json.loads(capsys.readouterr().out)
    assert json.loads(saved.read_text()) == data
    assert data["format_version"] == 2
    assert Plan.model_validate_json(saved.read_text()).to_json() == saved.read_text().strip()
    assert set(data["actions"][0]) >= {
        "model",
        "action",
        "gpus",
        "tensor_split",
        "gpu_layers",
        "estimate_mib",
        "reason",
    }
    by_model = {a["model"]: a for a in data["actions"]}
    assert by_model["coder"]["variant"] == "coder-small"  # the 14B does not fit a 12 GB card
    assert data["summary"]["start"] == 3


def test_no_changes_against_a_machine_already_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desired = tmp_path / "d.yaml"
    desired.write_text(
        "version: 1\nmodels:\n  - {name: tts, backend: command, argv: [/bin/t], vram_mib: 600}\n"
    )
    assert main(["status", "--profile", "rtx4090", "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    state["instances"] = [
        {"model": "tts", "pid": 4321, "start_time": 1.0, "gpus": ["0"], "used_mib": 600}
    ]
    observed = tmp_path / "now.json"
    observed.write_text(json.dumps(state))
    assert main(["plan", str(desired), "--observed", str(observed), "--detailed-exitcode"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "No changes. 1 to keep."
