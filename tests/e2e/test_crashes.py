"""Crashes with real processes (tiny_server.py --exit-after): the watcher restarts a crashing
model after growing delays, marks it crash-looping after the limit, and starts it again after
`reconcile reset`; `reconcile apply` reports a crash-looping model as blocked."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Project, free_port, wait_gone
from tests.e2e.test_watch import Watch, snapshot  # noqa: F401 - the fixture


class Timed(Watch):
    """A watcher whose log lines carry the moment they were read (`_at`, monotonic)."""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                record: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError:
                record = {"event": "raw", "message": line.rstrip()}
            record["_at"] = time.monotonic()
            self.lines.put(record)


def test_the_watcher_backs_off_then_holds_a_crash_loop_until_reset(
    project: Project,
    snapshot: Path,  # noqa: F811
) -> None:
    port = free_port()
    project.write(project.model("chat", port, "--exit-after", "0.8"))
    watch = Timed(project, snapshot, "--crash-limit", "3", "--backoff", "0.5")
    try:
        gaps = []
        for n, delay in ((1, 0.5), (2, 1.0)):
            watch.wait(lambda r: "chat: ready" in r.get("message", ""))
            crash = watch.event("crashed", "chat")
            assert (crash["crashes"], crash["restart_in_s"]) == (n, delay)
            assert f"(crash {n} of 3 within 10 min); restarting in {delay:g} s" in crash["message"]
            start = watch.event("start", "chat")
            gaps.append(start["_at"] - crash["_at"])
            assert gaps[-1] >= delay - 0.1, gaps
        assert gaps[1] > gaps[0]
        watch.wait(lambda r: "chat: ready" in r.get("message", ""))
        looping = watch.event("crashed", "chat")
        assert (looping["crashes"], looping["restart_in_s"]) == (3, None)
        assert "crash-looping (3 crashes in " in looping["message"]
        assert "`reconcile reset chat`" in looping["message"]
        time.sleep(2.5)  # longer than any backoff: it stays down
        while not watch.lines.empty():
            watch.seen.append(watch.lines.get())
        assert len([r for r in watch.seen if r["event"] == "start"]) == 3  # the first, 2 more
        assert project.pids() == {}
        code, out, _err = project.run(
            "status", "--observed", str(snapshot), "--state-dir", str(project.state)
        )
        assert code == 0
        assert "crash-looping: chat: 3 crashes in " in out
        code, out, _err = project.run("reset", "chat", "--state-dir", str(project.state))
        assert (code, out) == (
            0,
            "Reset chat: its crashes are forgotten; the next apply (or the watcher) starts it "
            "again.\n",
        )
        watch.event("start", "chat")
        watch.wait(lambda r: "chat: ready" in r.get("message", ""))
    finally:
        watch.end()


def test_apply_reports_a_crash_looping_model_as_blocked(project: Project) -> None:
    port = free_port()
    project.write(project.model("chat", port, "--exit-after", "1"))
    options = ("--crash-limit", "2", "--backoff", "0")
    for _ in range(2):
        code, out, _err = project.apply(*options)
        assert code == 0, out
        assert "+ start chat" in out
        assert wait_gone(project.pids()["chat"])
    code, out, _err = project.apply(*options)
    assert code == 0, out
    assert "! chat (pid " in out
    assert "crashed: crash-looping (2 crashes in " in out
    line = next(x for x in out.splitlines() if "blocked chat" in x)
    assert "crash-looping: 2 crashes in " in line
    assert line.endswith("fix it, then `reconcile reset chat` (or change its launch)")
    assert out.splitlines()[-1] == "No changes. 0 to keep. 1 blocked."
    assert project.pids() == {}
    code, _out, err = project.run("reset", "embed", "--state-dir", str(project.state))
    assert (code, err) == (
        1,
        f"embed: no crash recorded for it in {project.state / 'crashes.json'}; models with "
        "crashes: chat\n",
    )
    # a changed launch is not held: it starts
    project.write(project.model("chat", port, "--exit-after", "30"))
    code, out, _err = project.apply(*options)
    assert code == 0, out
    assert "+ start chat" in out
