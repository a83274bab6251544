"""`reconcile watch --install-service`: the unit it writes (accepted by systemd itself), the
systemctl commands it runs (a stand-in: no user manager here), and its removal."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from reconciler.apply import systemd
from reconciler.apply.systemd import Completed
from reconciler.cli import main


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> Completed:
        self.calls.append(list(argv))
        return Completed(0, "", "")


def test_install_and_uninstall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    fake = Recorder()
    monkeypatch.setattr(systemd, "run_command", fake)
    desired = tmp_path / "my models" / "desired.yaml"
    desired.parent.mkdir()
    desired.write_text("version: 1\nmodels: []\n")
    argv = [
        "watch",
        str(desired),
        "--install-service",
        "--interval",
        "0.5",
        "--state-dir",
        str(tmp_path / "state"),
    ]
    assert main(argv) == 0
    unit = tmp_path / "config" / "systemd" / "user" / "reconciler-watch.service"
    text = unit.read_text()
    assert "KillMode=process" in text
    assert (
        f'WorkingDirectory="{desired.parent}"' in text
        or f"WorkingDirectory={desired.parent}" in text
    )
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert f'"{desired}"' in exec_start
    assert "--interval 0.5" in exec_start
    assert "--install-service" not in exec_start
    assert fake.calls == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", "reconciler-watch.service"],
    ]
    assert "Installed and started" in capsys.readouterr().out
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        done = subprocess.run(
            [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
    assert sys.executable in exec_start
    fake.calls.clear()
    assert main(["watch", "--uninstall-service"]) == 0
    assert not unit.exists()
    assert fake.calls == [
        ["systemctl", "--user", "disable", "--now", "reconciler-watch.service"],
        ["systemctl", "--user", "daemon-reload"],
    ]
    assert main(["watch", "--uninstall-service"]) == 0
    assert capsys.readouterr().out.endswith("No watch service is installed.\n")
