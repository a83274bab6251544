"""`reconcile render` as a user runs it: what would be launched, secrets hidden, nothing run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from reconciler.cli import main

ROOT = Path(__file__).resolve().parents[2]
MIXED = str(ROOT / "desired" / "mixed-backends.yaml")
WORKSTATION = str(ROOT / "desired" / "workstation.yaml")


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Programs on PATH, fixed state and config folders, and no subprocess at all."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("llama-server", "vllm", "ollama"):
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("XDG_STATE_HOME", "/home/ada/.local/state")
    monkeypatch.setenv("XDG_CONFIG_HOME", "/home/ada/.config")
    for name in ("RECONCILER_LLAMA_SERVER", "RECONCILER_VLLM", "RECONCILER_OLLAMA"):
        monkeypatch.delenv(name, raising=False)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"render ran a program: {args}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    return bin_dir


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_every_launch_of_the_mixed_example_with_its_units(
    machine: Path, capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion
) -> None:
    code, out, err = run(
        ["render", MIXED, "--profile", "a100-80g", "--executor", "systemd"], capsys
    )
    assert (code, err) == (0, "")
    assert out.replace(str(machine), "<bin>") == snapshot
    assert "VLLM_LOGGING_LEVEL=<secret>" in out
    assert "VLLM_LOGGING_LEVEL=WARNING" not in out  # env values are never shown


def test_one_model_and_a_fallback_it_runs_as(
    machine: Path, capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion
) -> None:
    code, out, _err = run(["render", WORKSTATION, "coder", "--profile", "rtx3060-12g"], capsys)
    assert code == 0
    assert out.replace(str(machine), "<bin>") == snapshot
    assert "coder as coder-small (start, llama.cpp, GPU 0" in out
    assert "unit:" not in out  # the process executor has none


def test_a_program_that_is_not_found_is_a_warning_not_a_failure(
    machine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (machine / "llama-server").unlink()
    code, out, _err = run(["render", WORKSTATION, "chat", "--profile", "rtx4090"], capsys)
    assert code == 0
    assert "  warning: chat: llama.cpp's llama-server not found: " in out
    assert "\n    llama-server \\\n      -m /" in out


def test_a_model_that_would_not_run_or_does_not_exist(
    machine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(["render", WORKSTATION, "chta", "--profile", "rtx4090"], capsys)
    assert code == 1
    assert err == "no model named 'chta' in the plan; did you mean \"chat\"?\n"
    code, _out, err = run(["render", WORKSTATION, "coder", "--profile", "cpu-only"], capsys)
    assert code == 1
    assert err.startswith("coder would not be launched (blocked: ")


def write_desired(folder: Path, templates: str | None) -> Path:
    (folder / "m.gguf").write_bytes(b"")
    lines = ["version: 1"]
    if templates:
        lines.append(f"templates: {templates}")
    lines += [
        "models:",
        "  - name: tool",
        "    backend: command",
        "    argv: [llama-server, --port, '9000']",
        "    vram_mib: 100",
        "    env: {API_TOKEN: very-secret-token}",
        "    health_url: http://127.0.0.1:9000/health",
    ]
    path = folder / "desired.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def override(folder: Path, text: str) -> Path:
    (folder / "backends").mkdir(parents=True)
    (folder / "backends" / "command.j2").write_text(text)
    return folder


def test_templates_from_the_desired_file_and_the_option_that_wins(
    machine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    override(tmp_path / "mine", '[{{ program | arg }}, "--from-the-file"]\n')
    theirs = override(tmp_path / "theirs", '[{{ program | arg }}, "--from-the-option"]\n')
    desired = str(write_desired(tmp_path, "mine"))
    code, out, _err = run(["render", desired, "--profile", "rtx4090"], capsys)
    assert code == 0
    assert f"{machine}/llama-server \\\n      --from-the-file\n" in out
    assert "very-secret-token" not in out
    assert "API_TOKEN=<secret>" in out
    assert "health: GET http://127.0.0.1:9000/health" in out
    code, out, _err = run(
        ["render", desired, "--profile", "rtx4090", "--templates", str(theirs)], capsys
    )
    assert f"{machine}/llama-server \\\n      --from-the-option\n" in out


def test_an_unknown_template_variable_is_one_line_without_a_traceback(
    machine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = override(tmp_path / "mine", "[{{ program | arg }},\n {{ health_port | arg }}]\n")
    desired = str(write_desired(tmp_path, None))
    code, out, err = run(
        ["render", desired, "--profile", "rtx4090", "--templates", str(mine)], capsys
    )
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert err.startswith(f"{mine / 'backends' / 'command.j2'}:2: 'health_port' is undefined; ")
    assert "Traceback" not in err
