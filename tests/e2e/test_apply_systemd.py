"""`apply --executor systemd` end to end, with a stand-in for systemctl (no user manager runs
here): the units apply writes are read back and their ExecStart run as real processes, so the
journal, the identity checks, health, restarts and `down` are the real ones."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from reconciler.apply import systemd
from reconciler.apply.systemd import Completed
from tests.e2e.conftest import Project, alive, free_port, get, wait_gone


class Manager:
    """Plays `systemctl --user` for the units in one folder: start runs ExecStart (with the
    unit's Environment= lines) in a new session; show reports it; stop ends its group."""

    def __init__(self, units: Path) -> None:
        self.units = units
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.calls: list[list[str]] = []

    def _start(self, name: str) -> None:
        text = (self.units / name).read_text()
        env = dict(os.environ)
        argv: list[str] = []
        for line in text.splitlines():
            if line.startswith("ExecStart="):
                argv = shlex.split(line.removeprefix("ExecStart="))
            elif line.startswith("Environment="):
                key, _, value = shlex.split(line.removeprefix("Environment="))[0].partition("=")
                env[key] = value
        self.running[name] = subprocess.Popen(argv, env=env, start_new_session=True)

    def _show(self, name: str) -> str:
        proc = self.running.get(name)
        if proc is not None and proc.poll() is None:
            return f"MainPID={proc.pid}\nLoadState=loaded\nActiveState=active\nSubState=running\n"
        return "MainPID=0\nLoadState=loaded\nActiveState=inactive\nSubState=dead\n"

    def __call__(self, argv: Sequence[str]) -> Completed:
        self.calls.append(list(argv))
        words = [w for w in argv if w not in ("systemctl", "--user")]
        verb, name = words[0], words[-1]
        out = ""
        if verb == "start":
            self._start(name)
        elif verb == "stop" and name in self.running:
            proc = self.running.pop(name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        elif verb == "show":
            out = self._show(name)
        return Completed(0, out, "")

    def crash_and_restart(self, name: str) -> int:
        """What Restart=on-failure does after a crash: the same unit, a new main process."""
        proc = self.running[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self._start(name)
        return self.running[name].pid

    def stop_all(self) -> None:
        for proc in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Manager]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    fake = Manager(tmp_path / "config" / "systemd" / "user")
    monkeypatch.setattr(systemd, "run_command", fake)
    try:
        yield fake
    finally:
        fake.stop_all()


def test_apply_restart_and_down_through_systemd_units(project: Project, manager: Manager) -> None:
    port = free_port()
    project.write(project.model("chat", port, env={"API_TOKEN": "t0ken-not-in-the-unit"}))
    code, out, _err = project.apply("--executor", "systemd")
    assert code == 0, out
    unit = manager.units / "reconciler-chat.service"
    assert "t0ken-not-in-the-unit" not in unit.read_text()
    (entry,) = project.journal()
    assert (entry.executor, entry.unit) == ("systemd", "reconciler-chat")
    assert get(port) == (200, "ok")
    assert get(port, "/env/RECONCILER_INSTANCE") == (200, "chat")
    assert ["systemctl", "--user", "start", "reconciler-chat.service"] in manager.calls
    assert (project.state / "reconciler-chat.env").exists()  # the secret, 0600, not in the unit
    assert project.apply("--executor", "systemd")[1].splitlines()[-1] == "No changes. 1 to keep."

    project.write(project.model("chat", port, "--ready-after", "0.2"))
    code, out, _err = project.apply("--executor", "systemd")
    assert code == 0, out
    assert wait_gone(entry.pid)
    (again,) = project.journal()
    assert again.pid != entry.pid
    assert ["systemctl", "--user", "stop", "reconciler-chat.service"] in manager.calls

    code, out, _err = project.run(
        "down", "--yes", "--state-dir", str(project.state), "--executor", "systemd"
    )
    assert code == 0, out
    assert wait_gone(again.pid)
    assert not alive(again.pid)
    assert not unit.exists()  # removed with its instance
    assert not (project.state / "reconciler-chat.env").exists()  # and its secrets
    assert project.journal() == ()


def test_a_unit_whose_main_pid_is_not_the_journals_is_not_stopped(
    project: Project, manager: Manager
) -> None:
    port = free_port()
    project.write(project.model("chat", port))
    assert project.apply("--executor", "systemd")[0] == 0
    (entry,) = project.journal()
    # The journal's pid now names a process that is not ours (another start time).
    forged = entry.model_copy(update={"start_time": entry.start_time - 500})
    from reconciler.apply.journal import write_journal

    write_journal(project.state, [forged])
    code, out, _err = project.run(
        "down", "--yes", "--state-dir", str(project.state), "--executor", "systemd"
    )
    assert code == 0, out
    assert "was not signalled" in out
    assert alive(entry.pid)
    assert ["systemctl", "--user", "stop", "reconciler-chat.service"] not in manager.calls


def test_a_fallback_unit_carries_the_label_the_journal_records(
    project: Project, manager: Manager
) -> None:
    port = free_port()
    chat = project.model("chat", port, vram_mib=30000, fallbacks=["chat-small"])
    small = project.model("chat-small", port)
    project.write(chat, small)
    code, out, _err = project.apply("--executor", "systemd")
    assert code == 0, out
    (entry,) = project.journal()
    assert entry.model == "chat-small"
    assert get(port, "/env/RECONCILER_INSTANCE") == (200, "chat-small")
    code, out, _err = project.apply("--executor", "systemd")
    assert out.splitlines()[-1] == "No changes. 1 to keep.", out
    assert project.pids() == {"chat-small": entry.pid}


def test_a_unit_systemd_restarted_after_a_crash_is_followed(
    project: Project, manager: Manager
) -> None:
    port = free_port()
    project.write(project.model("chat", port))
    assert project.apply("--executor", "systemd")[0] == 0
    assert len(project.journal()) == 1
    new = manager.crash_and_restart("reconciler-chat.service")
    deadline = time.monotonic() + 10
    while get(port)[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    code, out, _err = project.apply("--executor", "systemd")
    assert code == 0, out
    assert f"its unit restarted it as pid {new}; following it" in out
    assert out.splitlines()[-1] == "No changes. 1 to keep."
    assert project.pids() == {"chat": new}
