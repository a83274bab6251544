"""The command line itself: options of every command, `--debug` anywhere, the default file,
output that cannot fail (encodings, closed pipes, full disks), and what a command imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import DEFAULT_FILE, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = str(ROOT / "desired" / "workstation.yaml")
COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
SMALL = "version: 1\nmodels:\n  - {name: tts, backend: command, argv: [/bin/t], vram_mib: 600}\n"


def reconcile(
    *argv: str, env: dict[str, str] | None = None, **kw: object
) -> subprocess.CompletedProcess[bytes]:
    """`python -m reconciler ARGV` as a separate process (its own streams and imports)."""
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *argv],
        env={**os.environ, **(env or {})},
        check=False,
        **kw,  # type: ignore[call-overload]
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_its_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: reconcile {command} ")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_command_shows_the_traceback(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nope.yaml")
    argv = ["--debug", "plan", missing] if where == "before" else ["plan", missing, "--debug"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-2] == f"{missing}: no such file; check the path"


def test_without_debug_one_line_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", str(tmp_path / "nope.yaml")]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_check_and_plan_read_the_same_default_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_FILE == "desired.yaml"
    assert main(["check"]) == 1
    assert capsys.readouterr().err.startswith("desired.yaml: no such file")
    assert main(["plan", "--profile", "rtx4090"]) == 1
    assert capsys.readouterr().err.startswith("desired.yaml: no such file")
    Path("desired.yaml").write_text(SMALL)
    assert main(["check", "--profile", "rtx4090"]) == 0
    assert capsys.readouterr().out.startswith("desired.yaml: valid, 1 model")
    assert main(["plan", "--profile", "rtx4090"]) == 0
    assert "+ start tts on GPU 0" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("encoding", "written"),
    [
        # a strict UTF-8 terminal: the file name's undecodable byte goes back out as it came
        ("utf-8", b"Saved the plan to p\xff.json,"),
        # an ASCII terminal: what it cannot show is escaped
        ("ascii", b"Saved the plan to \\xe9\\udcff.json,"),
    ],
)
def test_output_the_terminal_cannot_encode_is_escaped_never_a_crash(
    encoding: str, written: bytes, tmp_path: Path
) -> None:
    name = b"p\xff.json" if encoding == "utf-8" else b"\xc3\xa9\xff.json"
    done = reconcile(
        "plan",
        EXAMPLE,
        "--profile",
        "rtx4090",
        "-o",
        os.fsdecode(name),
        env={"PYTHONIOENCODING": encoding},
        cwd=tmp_path,
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith(written)
    assert done.stderr == b""
    assert (tmp_path / os.fsdecode(name)).exists()


def test_messages_with_unencodable_text_are_escaped(tmp_path: Path) -> None:
    missing = os.fsdecode(b"\xc3\xa9\xff.yaml")
    done = reconcile(
        "check", missing, env={"PYTHONIOENCODING": "ascii"}, cwd=tmp_path, capture_output=True
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == b"\\xe9\\udcff.yaml: no such file; check the path"


def test_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    reader = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "schema"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert reader.stdout is not None
    assert reader.stderr is not None
    reader.stdout.close()  # like `reconcile schema | head -0`
    err = reader.stderr.read()
    assert reader.wait() == 1
    assert err == b""


def test_a_full_disk_for_the_output_is_one_line(tmp_path: Path) -> None:
    with open("/dev/full", "wb") as full:
        done = reconcile(
            "plan", EXAMPLE, "--profile", "rtx4090", stdout=full, stderr=subprocess.PIPE
        )
    assert done.returncode == 1
    assert done.stderr.decode().splitlines() == [
        "reconcile: cannot write the output: No space left on device; free some space or "
        "write it elsewhere"
    ]


PROBE = """
import json, sys
from reconciler.cli import main
code = main(sys.argv[1:])
print(json.dumps([code, sorted(sys.modules)]), file=sys.stderr)
"""
HEAVY = ("jinja2", "psutil", "pynvml", "gguf", "numpy", "watchfiles")


def _imported(argv: list[str], cwd: Path = ROOT) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    code, modules = json.loads(done.stderr.splitlines()[-1])
    return code, modules


@pytest.mark.parametrize(
    "argv",
    [
        ["plan", "desired/workstation.yaml", "--profile", "rtx4090"],
        ["check", "desired/dual-gpu.yaml", "--profile", "2x3090", "--profile", "4090+3060"],
    ],
)
def test_plan_and_check_load_neither_the_applier_nor_the_machine_readers(argv: list[str]) -> None:
    code, modules = _imported(argv)
    assert code == 0
    loaded = [m for m in modules if m.split(".")[0] in HEAVY]
    assert loaded == []
    ours = [m for m in modules if m.startswith(("reconciler.apply", "reconciler.observe.nvml"))]
    assert ours == []
    assert "reconciler.commands.render" not in modules


def test_the_parser_and_its_help_load_no_command() -> None:
    probe = (
        "import sys, reconciler.cli as c; c.build_parser().format_help(); "
        "print(sorted(m for m in sys.modules if m.startswith('reconciler.commands.')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
