"""`reconcile plan` as a user runs it: views, saved plans, exit codes."""

from __future__ import annotations

import json
import os
import re
import threading
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
    desired: str,
    profile: str,
    capsys: pytest.CaptureFixture[str],
    snapshot: SnapshotAssertion,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every line of the human plan, pinned: each start with its own estimate and what is left
    where it goes, each blocked model with the room left now and its holders (the README's
    plan section quotes workstation-3060 and mixed-3060); a blocked `required` model is also
    an error line on stderr, and exit 1."""
    monkeypatch.chdir(ROOT)  # the file named as a user names it: errors carry that name
    code = main(["plan", os.path.relpath(desired, ROOT), "--profile", profile])
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith(f"Planned against profile:{profile} (observed ")
    errors = captured.err.splitlines()
    assert code == (1 if errors else 0)
    assert [*lines[1:], *errors] == snapshot


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
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "No changes. 1 to keep."
    # the file it read, then what that file says it was taken from: never "nvml" for a file
    assert lines[0].startswith(f"Planned against snapshot {observed} (observed ")
    assert lines[0].endswith("; taken from profile:rtx4090).")


REQUIRED = """version: 1
models:
  - {name: chat, backend: command, argv: [/bin/c], vram_mib: 30000, required: true, port: 9001}
  - {name: tts, backend: command, argv: [/bin/t], vram_mib: 600}
  - {name: big, backend: command, argv: [/bin/b], vram_mib: 40000}
"""


@pytest.mark.parametrize("detailed", [[], ["--detailed-exitcode"]])
def test_a_blocked_required_model_is_an_error_after_the_plan(
    detailed: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desired = tmp_path / "d.yaml"
    desired.write_text(REQUIRED)
    assert main(["plan", str(desired), "--profile", "rtx4090", *detailed]) == 1
    out, err = capsys.readouterr()
    blocked = [line for line in out.splitlines() if line.lstrip().startswith("!")]
    assert [line.split()[2].rstrip(":") for line in blocked] == ["chat", "big"]
    assert out.splitlines()[-1] == "Plan: 1 to start, 2 blocked."
    chat = blocked[0].split(": ", 1)[1]
    assert err.splitlines() == [
        f"error: {desired}:3:5: models[0]: required model chat cannot be placed: {chat}"
    ]


def test_a_blocked_required_model_is_listed_in_the_json_and_the_saved_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desired = tmp_path / "d.yaml"
    desired.write_text(REQUIRED)
    saved = tmp_path / "plan.json"
    assert main(["plan", str(desired), "--profile", "rtx4090", "--json", "-o", str(saved)]) == 1
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert len(data["errors"]) == 1
    assert data["errors"][0].startswith(
        f"{desired}:3:5: models[0]: required model chat cannot be placed: "
    )
    assert err == f"error: {data['errors'][0]}\n"
    assert json.loads(saved.read_text()) == data
    assert Plan.model_validate_json(saved.read_text()).errors == tuple(data["errors"])


def test_no_errors_when_required_models_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", EXAMPLE, "--profile", "rtx4090", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["errors"] == []


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("a" * 300 + ".json", "cannot save the plan there: File name too long; choose another"),
        ("full", "cannot save the plan: No space left on device; choose another path"),
    ],
)
def test_plan_o_where_the_system_refuses_is_one_line(
    target: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # /dev/full through a link of our own: were the device replaced rather than written in
    # place (as plans were saved before), the link would be, not the machine's /dev/full.
    (tmp_path / "full").symlink_to("/dev/full")
    path = str(tmp_path / target)
    assert main(["plan", EXAMPLE, "--profile", "rtx4090", "-o", path]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"{path}: {message}")
    assert err.count("\n") == 1
    assert (tmp_path / "full").is_symlink()


def test_plan_o_into_a_pipe_writes_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "plan.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    assert main(["plan", EXAMPLE, "--profile", "rtx4090", "-o", str(fifo)]) == 0
    reader.join(10)
    assert json.loads(got[0])["summary"]["start"] == 3
    assert fifo.is_fifo()
    capsys.readouterr()


def test_plan_help_names_only_commands_that_exist(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["plan", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    named = set(re.findall(r"`reconcile (\w+)", text))
    assert named == {"apply", "status"}
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    assert all(f"    {command} " in listed for command in named)
    assert "exit codes: 0 planned (with --detailed-exitcode: nothing to change); 2 with" in text
    assert "1 an error, also when a model marked `required: true` would be left blocked" in text


@pytest.mark.parametrize("where", ["file", "folder"])
@pytest.mark.parametrize("options", [[], ["--json"], ["-o", "plan.json"]])
def test_a_desired_file_whose_path_is_not_text_is_one_line(
    where: str,
    options: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = os.fsdecode(b"d\xff.yaml" if where == "file" else b"f\xff/d.yaml")
    Path(tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_text(REQUIRED.replace("30000", "300"))
    monkeypatch.chdir(tmp_path)
    assert main(["plan", name, "--profile", "rtx4090", *options]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    shown = name.encode("utf-8", "backslashreplace").decode()  # as stderr escapes it
    assert err.startswith(f"{shown}: its path ")
    assert err.endswith(" is not valid UTF-8; rename the file or the folder it is in\n")
