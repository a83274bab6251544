"""`reconcile watch` with real processes on a simulated machine (a snapshot the test rewrites):
edits start what they add and touch nothing else, an editor's save is seen, a broken file
changes nothing, a game taking the memory makes the lowest-priority model step aside, a
crashed model comes back, and SIGTERM leaves the models running."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main
from reconciler.config.yamlfile import dump_yaml
from tests.e2e.conftest import ROOT, Project, alive, free_port, get, wait_gone


class Watch:
    """`reconcile watch` as its own process; its JSON log lines read as they come."""

    def __init__(self, project: Project, snapshot: Path, *extra: str) -> None:
        argv = [
            sys.executable,
            "-m",
            "reconciler",
            "watch",
            str(project.file),
            "--observed",
            str(snapshot),
            "--state-dir",
            str(project.state),
            "--interval",
            "0.2",
            "--log-format",
            "json",
            "--health-timeout",
            "20",
            "--hold-off",
            "1",
            *extra,
        ]
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except json.JSONDecodeError:
                self.lines.put({"event": "raw", "message": line.rstrip()})

    def wait(self, want: Callable[[dict[str, Any]], bool], timeout_s: float = 40) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                record = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(record)
            if want(record):
                return record
        raise AssertionError(f"not seen in {timeout_s} s; the log was:\n{self.seen}")

    def event(self, name: str, model: str | None = None) -> dict[str, Any]:
        return self.wait(lambda r: r["event"] == name and model in (None, r.get("model")))

    def end(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)


@pytest.fixture
def snapshot(project: Project) -> Path:
    path = project.root / "machine.json"
    assert main(["status", "--profile", "rtx3060-12g", "--json"]) == 0
    path.write_text(project.capsys.readouterr().out)
    return path


def _game(snapshot: Path, mib: int) -> None:
    """A game on GPU 0 takes `mib` (0: it has quit), as the next observation will see."""
    state = json.loads(snapshot.read_text())
    gpu = state["gpus"][0]
    gpu["processes"] = [p for p in gpu["processes"] if p["pid"] != 4242]
    used = sum(p["used_mib"] or 0 for p in gpu["processes"])
    if mib:
        gpu["processes"].append(
            {
                "pid": 4242,
                "used_mib": mib,
                "kind": "graphics",
                "name": "game.exe",
                "owner": "foreign",
            }
        )
    gpu["memory_used_mib"] = used + mib
    gpu["memory_free_mib"] = gpu["memory_total_mib"] - used - mib
    tmp = snapshot.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, snapshot)


def test_edits_start_what_they_add_and_nothing_else(project: Project, snapshot: Path) -> None:
    a, b = free_port(), free_port()
    project.write(project.model("chat", a, priority=9))
    watch = Watch(project, snapshot)
    try:
        watch.event("start", "chat")
        watch.wait(lambda r: "chat: ready" in r.get("message", ""))
        first = project.pids()["chat"]
        # an editor's save: a new file renamed over the old one
        tmp = project.root / ".desired.yaml.swp"
        tmp.write_text(
            dump_yaml(
                {
                    "version": 1,
                    "models": [project.model("chat", a, priority=9), project.model("embed", b)],
                }
            )
        )
        os.replace(tmp, project.file)
        started = watch.event("start", "embed")
        assert started["trigger"] == "file"
        watch.wait(lambda r: "embed: ready" in r.get("message", ""))
        assert project.pids() == {"chat": first, "embed": project.pids()["embed"]}
        assert get(b) == (200, "ok")
        assert watch.end() == 0
    finally:
        watch.end()
    assert alive(first)  # SIGTERM leaves the models running
    assert project.journal()


def test_a_broken_edit_changes_nothing_and_is_reported_once(
    project: Project, snapshot: Path
) -> None:
    port = free_port()
    project.write(project.model("chat", port))
    watch = Watch(project, snapshot)
    try:
        watch.wait(lambda r: "chat: ready" in r.get("message", ""))
        pid = project.pids()["chat"]
        project.file.write_text(project.file.read_text() + "  - {name: [oops\n")
        bad = watch.event("invalid")
        assert bad["errors"][0].startswith(f"{project.file}:")
        assert "the last good state stays in force" in bad["message"]
        time.sleep(1.0)  # several cycles: no second report, nothing stopped
        assert [r for r in watch.seen if r["event"] == "invalid"] == [bad]
        assert project.pids() == {"chat": pid}
        assert alive(pid)
    finally:
        watch.end()


def test_a_game_makes_the_lowest_priority_model_step_aside_and_it_returns(
    project: Project, snapshot: Path
) -> None:
    hi, lo = free_port(), free_port()
    project.write(
        project.model("chat", hi, priority=9, vram_mib=4000),
        project.model("notes", lo, priority=1, vram_mib=4000),
    )
    watch = Watch(project, snapshot)
    try:
        watch.wait(lambda r: "notes: ready" in r.get("message", ""))
        chat, notes = project.pids()["chat"], project.pids()["notes"]
        began = time.monotonic()
        _game(snapshot, 3000)  # 9680 MiB of budget; 3000 taken: room for one model only
        stop = watch.event("stop", "notes")
        assert "yielding to game.exe (pid 4242, 3000 MiB)" in stop["reason"]
        watch.wait(lambda r: f"notes (pid {notes}) stopped" in r.get("message", ""))
        assert wait_gone(notes)
        sys.stderr.write(f"foreign VRAM -> stop: {time.monotonic() - began:.2f} s\n")
        assert project.pids() == {"chat": chat}
        aside = watch.event("stepped-aside", "notes")
        assert aside["message"].startswith("notes unloaded to free GPU 0: yielding to game.exe")
        _game(snapshot, 0)  # the game quits: notes comes back after the hold-off (1 s here)
        quit_at = time.monotonic()
        watch.event("holding", "notes")
        watch.event("start", "notes")
        assert time.monotonic() - quit_at >= 1.0
        watch.wait(lambda r: "notes: ready" in r.get("message", ""))
        assert alive(chat)
    finally:
        watch.end()


def test_a_crashed_model_is_started_again(project: Project, snapshot: Path) -> None:
    port = free_port()
    project.write(project.model("chat", port))
    watch = Watch(project, snapshot)
    try:
        watch.wait(lambda r: "chat: ready" in r.get("message", ""))
        pid = project.pids()["chat"]
        os.kill(pid, signal.SIGKILL)
        watch.event("start", "chat")
        watch.wait(lambda r: "chat: ready" in r.get("message", ""))
        assert project.pids()["chat"] != pid
        assert get(port) == (200, "ok")
    finally:
        watch.end()


def test_stop_on_exit_stops_the_models(project: Project, snapshot: Path) -> None:
    port = free_port()
    project.write(project.model("chat", port))
    watch = Watch(project, snapshot, "--stop-on-exit")
    try:
        watch.wait(lambda r: "chat: ready" in r.get("message", ""))
        pid = project.pids()["chat"]
        watch.proc.send_signal(signal.SIGINT)
        assert watch.proc.wait(20) == 0
        assert wait_gone(pid)
        assert project.journal() == ()
    finally:
        watch.end()


def test_exclusive_clears_a_gpu_for_a_new_program_but_not_for_a_compositor(
    project: Project,
) -> None:
    assert main(["status", "--profile", "2x3090", "--json"]) == 0
    snapshot = project.root / "machine.json"
    snapshot.write_text(project.capsys.readouterr().out)
    port = free_port()
    project.write(project.model("chat", port), policy={"foreign_processes": "exclusive"})
    watch = Watch(project, snapshot, "--hold-off", "0.5")
    try:
        watch.wait(lambda r: "chat: ready" in r.get("message", ""))
        (entry,) = project.journal()
        assert entry.gpus == ("0",)
        _add(snapshot, 0, 4300, "gnome-shell", 900)  # a compositor: ignored
        time.sleep(1.0)
        assert [r for r in watch.seen if r["event"] in ("stop", "move")] == []
        _add(snapshot, 0, 4242, "game.exe", 600)  # a game starts on GPU 0: it is left to it
        moved = watch.event("move", "chat")
        assert moved["gpus"] == ["1"]
        assert "left to game.exe (pid 4242) (foreign_processes: exclusive)" in moved["reason"]
        watch.wait(lambda r: "chat: ready" in r.get("message", ""))
        assert project.journal()[0].gpus == ("1",)
    finally:
        watch.end()


def _add(snapshot: Path, gpu: int, pid: int, name: str, mib: int) -> None:
    state = json.loads(snapshot.read_text())
    g = state["gpus"][gpu]
    g["processes"].append(
        {"pid": pid, "used_mib": mib, "kind": "graphics", "name": name, "owner": "foreign"}
    )
    g["memory_used_mib"] += mib
    g["memory_free_mib"] -= mib
    tmp = snapshot.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, snapshot)


def test_a_busy_folder_does_not_hold_off_the_machines_observation(
    project: Project, snapshot: Path
) -> None:
    """Another file beside the desired file rewritten every 100 ms (a log, a sync tool): the
    game is still seen within a few intervals."""
    hi, lo = free_port(), free_port()
    project.write(
        project.model("chat", hi, priority=9, vram_mib=4000),
        project.model("notes", lo, priority=1, vram_mib=4000),
    )
    done = threading.Event()

    def busy() -> None:
        n = 0
        while not done.is_set():
            (project.root / "app.log").write_text(f"line {n}\n")
            n += 1
            time.sleep(0.1)

    watch = Watch(project, snapshot)
    writer = threading.Thread(target=busy, daemon=True)
    try:
        watch.wait(lambda r: "notes: ready" in r.get("message", ""))
        writer.start()
        time.sleep(0.5)
        began = time.monotonic()
        _game(snapshot, 3000)
        watch.event("stop", "notes")
        assert time.monotonic() - began < 3.0
    finally:
        done.set()
        watch.end()
