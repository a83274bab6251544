"""A project to apply: a desired file of real processes (tests/e2e/tiny_server.py with the
`command` backend), a state folder, and GPUs simulated by a profile."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main
from reconciler.config.yamlfile import dump_yaml
from reconciler.observe.journal import JournalEntry, read_journal

TINY = Path(__file__).with_name("tiny_server.py")
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(port: int, path: str = "/health") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ChildProcessError):
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and ") Z " in status.read_text())


def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


class Project:
    """One desired file, its state folder, and the simulated machine (profile rtx4090)."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.root = root
        self.state = root / "state"
        self.file = root / "desired.yaml"
        self.capsys = capsys

    def model(self, name: str, port: int, *args: str, **keys: Any) -> dict[str, Any]:
        return {
            "name": name,
            "backend": "command",
            "argv": [sys.executable, str(TINY), str(port), *args],
            "vram_mib": 1000,
            "port": port,
            "health_url": f"http://127.0.0.1:{port}/health",
            **keys,
        }

    def write(self, *models: dict[str, Any], **top: Any) -> None:
        self.file.write_text(dump_yaml({"version": 1, **top, "models": list(models)}))

    def run(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(list(argv))
        got = self.capsys.readouterr()
        return code, got.out, got.err

    def apply(
        self, *extra: str, target: str | None = None, profile: str = "rtx4090"
    ) -> tuple[int, str, str]:
        return self.run(
            "apply",
            target or str(self.file),
            "--yes",
            "--profile",
            profile,
            "--state-dir",
            str(self.state),
            "--health-timeout",
            "20",
            "--stop-timeout",
            "5",
            *extra,
        )

    def apply_argv(self, *extra: str) -> list[str]:
        """The same apply as a separate process (to interrupt it, or run two at once)."""
        return [
            sys.executable,
            "-m",
            "reconciler",
            "apply",
            str(self.file),
            "--yes",
            "--profile",
            "rtx4090",
            "--state-dir",
            str(self.state),
            "--health-timeout",
            "30",
            *extra,
        ]

    def journal(self) -> tuple[JournalEntry, ...]:
        return read_journal(self.state / "journal.json")

    def pids(self) -> dict[str, int]:
        return {e.model: e.pid for e in self.journal()}

    def journal_json(self) -> Any:
        return json.loads((self.state / "journal.json").read_text())


@pytest.fixture
def project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Project]:
    made = Project(tmp_path, capsys)
    try:
        yield made
    finally:
        for entry in made.journal() if (made.state / "journal.json").exists() else ():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(entry.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(entry.pid, 0)
