"""`reconcile apply` end to end with real processes (the `command` backend, GPUs simulated):
start, keep, restart on change, stop on removal, failed health, a crash, Ctrl-C and `kill -9`
of apply, two applies at once, a stale saved plan, and processes that are not ours."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil

from reconciler.apply.journal import write_journal
from reconciler.observe.journal import JournalEntry
from tests.e2e.conftest import ROOT, TINY, Project, alive, free_port, get, wait_gone


def test_start_then_nothing_to_do(project: Project) -> None:
    port = free_port()
    project.write(project.model("chat", port))
    code, out, _err = project.apply()
    assert code == 0, out
    assert "+ start chat" in out
    assert "Apply complete: 1 started, 0 stopped." in out
    (entry,) = project.journal()
    assert get(port) == (200, "ok")
    assert get(port, "/pid") == (200, str(entry.pid))
    assert get(port, "/env/RECONCILER_INSTANCE") == (200, "chat")
    assert get(port, "/env/CUDA_VISIBLE_DEVICES") == (200, "GPU-profile-rtx4090-0")
    assert entry.launch is not None
    assert entry.estimate_mib == {"0": 1000, "host": 0}
    assert oct((project.state / "journal.json").stat().st_mode & 0o777) == "0o600"
    code, out, _err = project.apply()
    assert (code, out.splitlines()[-1]) == (0, "No changes. 1 to keep.")
    assert project.pids() == {"chat": entry.pid}
    code, out, _err = project.run("logs", "chat", "--state-dir", str(project.state))
    assert code == 0
    assert f"tiny_server listening on {port}" in out
    code, _out, err = project.run("logs", "nope", "--state-dir", str(project.state))
    assert code == 1
    assert err.startswith("no log for nope: the journal in ")
    code, out, _err = project.run(
        "status", "--profile", "rtx4090", "--state-dir", str(project.state)
    )
    line = next(x for x in out.splitlines() if x.startswith("    chat"))
    assert f"pid {entry.pid}  running  up " in line
    assert f"port {port}  GPU 0  1000 MiB (estimated 1000)  (journal)" in line


def test_restart_on_change_and_stop_on_removal(project: Project) -> None:
    a, b = free_port(), free_port()
    project.write(project.model("chat", a), project.model("embed", b))
    assert project.apply()[0] == 0
    before = project.pids()
    project.write(project.model("chat", a, "--ready-after", "0.3"), project.model("embed", b))
    code, out, _err = project.apply()
    assert code == 0, out
    assert "-/+ restart chat" in out
    assert "argv" in out  # the launch field that changed
    after = project.pids()
    assert after["embed"] == before["embed"]  # untouched
    assert after["chat"] != before["chat"]
    assert wait_gone(before["chat"])
    assert get(a) == (200, "ok")
    project.write(project.model("embed", b))
    code, out, _err = project.apply()
    assert code == 0, out
    assert "- stop    chat" in out or "- stop chat" in out
    assert wait_gone(after["chat"])
    assert project.pids() == {"embed": before["embed"]}


def test_failed_health_is_stopped_and_reported_and_the_others_go_on(project: Project) -> None:
    bad, good = free_port(), free_port()
    project.write(
        project.model("broken", bad, "--health", "500", priority=9),
        project.model("fine", good),
    )
    code, out, _err = project.apply("--health-timeout", "3")
    assert code == 1
    assert "error: broken: reconciler-broken: not ready after 3 s" in out
    assert '"GET /health HTTP/1.1" 500' in out  # the tail of its log
    assert "Apply complete: 1 started, 0 stopped, 1 failed." in out
    assert set(project.pids()) == {"fine"}
    assert get(bad) == (0, "")  # stopped
    assert get(good) == (200, "ok")


def test_a_crashed_instance_is_started_again(project: Project) -> None:
    port = free_port()
    project.write(project.model("chat", port))
    assert project.apply()[0] == 0
    pid = project.pids()["chat"]
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid)
    code, out, _err = project.apply()  # at once: it waits out its backoff (1 s)
    assert code == 0, out
    assert f"! chat (pid {pid}) crashed (crash 1 of 5 within 10 min); restarting in 1 s" in out
    assert "! blocked chat: restarting after a crash in " in out
    assert project.journal() == ()
    time.sleep(1.0)
    code, out, _err = project.apply()
    assert code == 0, out
    assert "+ start chat" in out
    assert project.pids()["chat"] != pid
    assert len(project.journal()) == 1  # the dead entry is gone, no duplicate
    assert get(port) == (200, "ok")


def _interrupted(project: Project, sig: signal.Signals) -> None:
    """Apply as its own process, interrupted while it waits for a slow model's health."""
    port = free_port()
    project.write(project.model("slow", port, "--ready-after", "3"))
    apply = subprocess.Popen(
        project.apply_argv(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not project.pids():
        time.sleep(0.05)  # until the start is in the journal
    assert project.pids(), "apply never journaled its start"
    apply.send_signal(sig)
    apply.wait(10)
    pid = project.pids()["slow"]
    assert alive(pid)  # the instance outlives apply: it is in the journal, not an orphan
    code, out, _err = project.apply()
    assert code == 0, out
    assert project.pids() == {"slow": pid}  # kept, not started twice
    assert "slow" in out


def test_ctrl_c_of_apply_leaves_a_journal_the_next_run_reconciles_from(
    project: Project,
) -> None:
    _interrupted(project, signal.SIGINT)


def test_kill_9_of_apply_then_apply_again(project: Project) -> None:
    _interrupted(project, signal.SIGKILL)


def test_two_applies_at_once(project: Project) -> None:
    port = free_port()
    project.write(project.model("slow", port, "--ready-after", "2"))
    first = subprocess.Popen(
        project.apply_argv(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not project.pids():
        time.sleep(0.05)
    code, _out, err = project.apply("--lock-timeout", "0.3")
    assert code == 1
    assert "holds the state folder's lock" in err
    assert first.wait(30) == 0
    code, out, _err = project.apply()  # once the first is done, nothing is left to do
    assert code == 0
    assert out.splitlines()[-1] == "No changes. 1 to keep."


def test_a_stale_saved_plan_is_refused(project: Project) -> None:
    port = free_port()
    project.write(project.model("chat", port))
    saved = project.root / "plan.json"
    code, _out, _err = project.run(
        "plan", str(project.file), "--profile", "rtx4090", "-o", str(saved)
    )
    assert code == 0
    project.write(project.model("chat", port, "--ready-after", "0.1"))
    code, _out, err = project.apply(target=str(saved))
    assert code == 1
    assert "Saved plan is stale: nothing was changed." in err
    assert "the desired file (or a variable it reads) changed since the plan was saved" in err
    assert not project.pids()


def test_a_fresh_saved_plan_is_carried_out(project: Project) -> None:
    port = free_port()
    project.write(project.model("chat", port))
    saved = project.root / "plan.json"
    assert project.run("plan", str(project.file), "--profile", "rtx4090", "-o", str(saved))[0] == 0
    code, out, _err = project.apply(target=str(saved))
    assert code == 0, out
    assert get(port) == (200, "ok")


def test_without_a_terminal_and_without_yes_nothing_changes(project: Project) -> None:
    port = free_port()
    project.write(project.model("chat", port))
    argv = [a for a in project.apply_argv() if a != "--yes"]
    done = subprocess.run(
        argv, check=False, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 1
    assert "pass --yes" in done.stderr
    assert not project.pids()


def test_down_stops_everything_it_started(project: Project) -> None:
    a, b = free_port(), free_port()
    project.write(project.model("chat", a), project.model("embed", b))
    assert project.apply()[0] == 0
    pids = list(project.pids().values())
    code, out, _err = project.run("down", "--yes", "--state-dir", str(project.state))
    assert code == 0, out
    assert all(wait_gone(pid) for pid in pids)
    assert project.journal() == ()
    assert project.run("down", "--yes", "--state-dir", str(project.state))[1].startswith(
        "Nothing to stop"
    )


def _look_alike(port: int, *, label: str | None = None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "RECONCILER_INSTANCE"}
    if label is not None:
        env["RECONCILER_INSTANCE"] = label
    proc = subprocess.Popen([sys.executable, str(TINY), str(port)], env=env)
    deadline = time.monotonic() + 10
    while get(port)[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def test_processes_that_are_not_ours_are_never_signalled(project: Project) -> None:
    """The same argv as ours without our label, and a pid of the journal reused by another
    process (another start time): both stay running; the journal forgets them."""
    port, other = free_port(), free_port()
    look_alike = _look_alike(port)
    reused = _look_alike(other, label="chat")
    try:
        started = psutil.Process(look_alike.pid).create_time()
        write_journal(
            project.state,
            [
                JournalEntry(model="chat", pid=look_alike.pid, start_time=started),
                JournalEntry(model="chat", pid=reused.pid, start_time=started - 1000),
            ],
        )
        code, out, _err = project.run("down", "--yes", "--state-dir", str(project.state))
        assert code == 0, out
        assert f"pid {look_alike.pid} was not signalled" in out
        assert "does not carry our label" in out
        assert alive(look_alike.pid)
        assert alive(reused.pid)
        assert project.journal() == ()
    finally:
        for proc in (look_alike, reused):
            proc.kill()
            proc.wait()


def test_an_instance_only_its_label_says_is_ours_is_left_alone(project: Project) -> None:
    port = free_port()
    stray = _look_alike(port, label="chat")
    try:
        snapshot = project.root / "now.json"
        code, out, _err = project.run("status", "--profile", "rtx4090", "--json")
        assert code == 0
        state = json.loads(out)
        state["instances"] = [
            {
                "model": "chat",
                "pid": stray.pid,
                "start_time": psutil.Process(stray.pid).create_time(),
                "source": "label",
                "gpus": ["0"],
                "used_mib": 1000,
                "used_by_gpu": {"0": 1000},
            }
        ]
        snapshot.write_text(json.dumps(state))
        project.write()  # chat is no longer desired
        code, out, _err = project.run(
            "apply", str(project.file), "--yes", "--observed", str(snapshot),
            "--state-dir", str(project.state),
        )  # fmt: skip
        assert code == 0, out
        assert "? unmanaged chat" in out
        assert "No changes." in out
        assert alive(stray.pid)
    finally:
        stray.kill()
        stray.wait()


def test_a_command_runs_in_the_desired_files_folder(project: Project) -> None:
    (project.root / "server.py").write_text(TINY.read_text())
    port = free_port()
    model = project.model("chat", port)
    model["argv"] = [sys.executable, "server.py", str(port)]  # relative to the desired file
    project.write(model)
    code, out, _err = project.apply()
    assert code == 0, out
    assert get(port) == (200, "ok")
