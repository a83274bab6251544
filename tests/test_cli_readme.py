"""The README's quick start runs as shown, line by line and in its order: a file is written by
an earlier line before a later one reads it (`status --json > now.json` before
`plan --observed now.json`)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICK_START = "After the first `make`, the command is also at `.venv/bin/reconcile`"


def _quick_start() -> list[str]:
    text = (ROOT / "README.md").read_text()
    after = text[text.index(QUICK_START) :]
    block = re.search(r"```sh\n(.*?)```", after, re.S)
    assert block is not None
    return [line.split("  #")[0].strip() for line in block[1].splitlines() if line.strip()]


def _nvml() -> bool:
    """Whether this machine has an NVIDIA driver that NVML can talk to."""
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    return True


def test_the_quick_start_writes_each_file_before_reading_it() -> None:
    written: set[str] = set()
    for line in _quick_start():
        words = line.split()
        for option in ("--observed", "apply"):
            if option in words:
                read = words[words.index(option) + 1]
                assert read in written or Path(ROOT, read).exists(), (read, line)
        if ">" in words:
            written.add(words[words.index(">") + 1])
        if "-o" in words:
            written.add(words[words.index("-o") + 1])
    assert "now.json" in written


def test_the_quick_start_runs(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "desired", tmp_path / "desired")
    program = tmp_path / ".venv" / "bin" / "reconcile"
    program.parent.mkdir(parents=True)
    program.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m reconciler "$@"\n')
    program.chmod(0o755)
    ran = 0
    for line in _quick_start():
        this_machine = not any(w in line for w in ("--profile", "--observed", "check", "schema"))
        if this_machine and not _nvml():
            continue  # planning for this machine's GPUs needs an NVIDIA driver
        done = subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, (line, done.stderr)
        ran += 1
    assert ran >= 6
    assert (tmp_path / "plan.json").exists()
