"""`reconcile check` end to end through `main(argv)`, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_check_valid_example_against_a_profile(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = run(["check", "desired/workstation.yaml", "--profile", "rtx4090"], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "desired/workstation.yaml: valid, 4 models"
    assert lines[1].split()[:6] == ["chat", "llama.cpp", "priority", "100", "ctx", "16384"]
    assert "required" in lines[1]
    assert "fallbacks coder-small" in lines[3]
    assert lines[-2].startswith("profile rtx4090: workstation, RTX 4090 24 GB")
    assert lines[-1] == "  3 of 3 models fit"


def test_check_lists_every_error_and_exits_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT / "tests" / "config" / "broken")
    code, out, err = run(["check", "three-mistakes.yaml"], capsys)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        'three-mistakes.yaml:3:14: policy.placement: must be one of binpack, spread, got "tight"',
        "three-mistakes.yaml:8:10: models[0].ctx: must be a positive integer, got -1",
        'three-mistakes.yaml:12:5: models[1].prioriti: unknown key; did you mean "priority"?',
        "3 problems in three-mistakes.yaml; fix and run `reconcile check` again.",
    ]


def test_check_against_a_profile_without_the_pinned_gpu(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code, _out, err = run(["check", "desired/dual-gpu.yaml", "--profile", "rtx4090"], capsys)
    assert code == 1
    assert "desired/dual-gpu.yaml:41:11: models[2].pin[0]: no GPU 1 on profile rtx4090" in err


def test_usage_errors_exit_1_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(["check", "--format", "xml"], capsys)
    assert code == 1
    assert err.strip() == (
        "reconcile check: argument --format: invalid choice: 'xml' (choose from 'text', "
        "'github'); see `reconcile check --help`"
    )


def test_missing_file_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(["check", "/nonexistent/desired.yaml"], capsys)
    assert code == 1
    assert err.splitlines()[0] == "/nonexistent/desired.yaml: no such file; check the path"


def test_debug_adds_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(["--debug", "check", "/nonexistent/desired.yaml"], capsys)
    assert code == 1
    assert "Traceback" in err


def test_console_script_and_module_entry_points() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "check",
            str(ROOT / "desired" / "gaming-desktop.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "valid, 3 models" in done.stdout


def test_several_files_are_all_checked_and_errors_come_together(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """pre-commit passes every changed file at once: a broken one does not hide the others."""
    monkeypatch.chdir(ROOT / "tests" / "config" / "broken")
    example = str(ROOT / "desired" / "workstation.yaml")
    argv = ["check", "three-mistakes.yaml", example, "bad-placement.yaml", "three-mistakes.yaml"]
    code, out, err = run(argv, capsys)
    assert code == 1
    assert out.splitlines()[0] == f"{example}: valid, 4 models"
    assert err.splitlines()[-1] == (
        "4 problems in bad-placement.yaml, three-mistakes.yaml; "
        "fix and run `reconcile check` again."
    )


def test_several_files_as_github_annotations(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    broken = "tests/config/broken/three-mistakes.yaml"
    argv = ["check", "--format", "github", "desired/workstation.yaml", broken]
    code, out, err = run(argv, capsys)
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        f"::error file={broken},line=3,col=14::policy.placement: must be one of binpack, spread,"
        ' got "tight"',
        f"::error file={broken},line=8,col=10::models[0].ctx: must be a positive integer, got -1",
        f"::error file={broken},line=12,col=5::models[1].prioriti: unknown key; did you mean"
        ' "priority"?',
    ]


def test_missing_gpus_come_in_the_same_pass_as_the_files_other_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A GPU the profile lacks is reported beside a bad value, not only once that is fixed."""
    path = tmp_path / "d.yaml"
    path.write_text(
        "version: 1\ngpus: [0, 3]\nmodels:\n  - name: chat\n    backend: command\n"
        "    argv: [/bin/x]\n    vram_mib: -5\n    pin: [2]\n"
    )
    code, out, err = run(["check", str(path), "--profile", "rtx4090"], capsys)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"{path}:2:11: gpus[1]: no GPU 3 on profile rtx4090, which has GPU 0",
        f"{path}:7:15: models[0].vram_mib: must be a positive integer, got -5",
        f"{path}:8:11: models[0].pin[0]: GPU 2 is not in `gpus` (0, 3); add it there or pin to "
        "one of those",
        f"{path}:8:11: models[0].pin[0]: no GPU 2 on profile rtx4090, which has GPU 0",
        f"4 problems in {path}; fix and run `reconcile check` again.",
    ]


def test_a_piped_file_gets_its_missing_gpus_in_the_same_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`reconcile check <(generate)`: the file is read once, so the second look at it (for
    the GPUs a profile lacks) sees the same bytes."""
    path = tmp_path / "d.yaml"
    path.write_text(
        "version: 1\nmodels:\n  - name: chat\n    backend: command\n    argv: [/bin/x]\n"
        "    vram_mib: -5\n    pin: [5]\n"
    )
    read, write = os.pipe()
    with os.fdopen(write, "wb") as pipe:
        pipe.write(path.read_bytes())
    fd = f"/dev/fd/{read}"
    try:
        code, _out, err = run(["check", fd, "--profile", "rtx3090"], capsys)
    finally:
        os.close(read)
    assert code == 1
    assert err.splitlines() == [
        f"{fd}:6:15: models[0].vram_mib: must be a positive integer, got -5",
        f"{fd}:7:11: models[0].pin[0]: no GPU 5 on profile rtx3090, which has GPU 0",
        f"2 problems in {fd}; fix and run `reconcile check` again.",
    ]
