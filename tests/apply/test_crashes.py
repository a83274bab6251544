"""Crashes: the record (backoff, the window, crash-looping, a changed launch), `hold` on a
plan with a fake clock, `crashes.json` on disk, and the applier telling of crashes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.apply.crashes import (
    BACKOFF_MAX_S,
    CRASH_LIMIT,
    Crash,
    CrashBook,
    CrashRecord,
    Policy,
    crash_of,
    hold,
    looping_lines,
    recorded,
)
from reconciler.apply.journal import boot_id, write_journal
from reconciler.apply.units import Rendered
from reconciler.config.desired import Desired
from reconciler.config.loader import load_profile
from reconciler.errors import ApplyError
from reconciler.observe.journal import JournalEntry
from reconciler.observe.snapshot import from_profile
from reconciler.plan.model import Plan
from reconciler.plan.planner import make_plan
from tests.apply.test_applier import DESIRED, Executor, Memory, applier

T0 = 1_700_000_000.0


def desired(argv: str = "/bin/c") -> Desired:
    return Desired.model_validate(
        {
            "version": 1,
            "models": [
                {"name": "chat", "backend": "command", "argv": [argv], "vram_mib": 1000},
                {"name": "embed", "backend": "command", "argv": ["/bin/e"], "vram_mib": 500},
            ],
        }
    )


def fresh_plan(argv: str = "/bin/c") -> Plan:
    return make_plan(desired(argv), from_profile(load_profile("rtx4090").spec, "rtx4090"), {})


def entry_of(plan: Plan, pid: int = 4242, model: str = "chat") -> JournalEntry:
    action = next(a for a in plan.actions if a.model == model)
    assert action.launch is not None
    return JournalEntry(model=model, pid=pid, start_time=1.0, launch=action.launch)


def crashed(times: list[float], plan: Plan, policy: Policy) -> CrashRecord:
    record = CrashRecord()
    for i, at in enumerate(times):
        model, crash = crash_of(entry_of(plan, pid=100 + i), at, "boom")
        record = recorded(record, model, crash, policy)
    return record


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = Policy()
    assert [policy.delay(n) for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert policy.delay(10) == BACKOFF_MAX_S == 300
    assert policy.delay(10_000) == 300
    assert Policy(first_s=0.2).delay(3) == pytest.approx(0.8)


def test_a_start_waits_out_its_backoff_then_goes() -> None:
    plan, policy = fresh_plan(), Policy()
    record = crashed([T0, T0 + 10, T0 + 20], plan, policy)  # third crash: 4 s
    held = hold(plan, record, T0 + 21, policy)
    chat = next(a for a in held.actions if a.model == "chat")
    assert chat.action == "blocked"
    assert chat.reason.startswith("restarting after a crash in 3 s (backoff; crash 3 of 5 within")
    assert "(pid 102), its log ending 'boom'" in chat.reason
    assert (chat.launch, chat.gpus) == (None, ())
    # nothing else recomputed: the other model, the GPUs and the notes are the same objects
    assert held.actions[1] is plan.actions[1]
    assert held.gpus == plan.gpus
    assert held.summary["blocked"] == 1
    assert hold(plan, record, T0 + 24, policy) is plan  # the 4 s are over


def test_the_limit_within_the_window_is_crash_looping_until_the_launch_changes() -> None:
    plan, policy = fresh_plan(), Policy()
    record = crashed([T0 + 60 * i for i in range(CRASH_LIMIT)], plan, policy)
    assert record.models["chat"].looping
    for later in (T0 + 300, T0 + 86_400):  # however long after: still held
        chat = hold(plan, record, later, policy).actions[0]
        assert chat.action == "blocked"
        assert chat.reason.startswith("crash-looping: 5 crashes in 4 min, the last exit at ")
        assert chat.reason.endswith("; fix it, then `reconcile reset chat` (or change its launch)")
    changed = fresh_plan("/bin/fixed")
    assert hold(changed, record, T0 + 300, policy) is changed
    assert looping_lines(record) == [
        f"crash-looping: chat: 5 crashes in 4 min, the last exit at "
        f"{time.strftime('%H:%M:%S', time.localtime(T0 + 240))} (pid 104), its log ending "
        "'boom'; fix it, then `reconcile reset chat`"
    ]


def test_crashes_outside_the_window_or_of_another_launch_do_not_count() -> None:
    plan, policy = fresh_plan(), Policy(limit=3, window_s=600)
    spread = crashed([T0, T0 + 700, T0 + 1400], plan, policy)
    assert len(spread.models["chat"].crashes) == 1
    assert not spread.models["chat"].looping
    record = crashed([T0, T0 + 1], plan, policy)
    other = entry_of(fresh_plan("/bin/d"), pid=7)
    model, crash = crash_of(other, T0 + 2)
    record = recorded(record, model, crash, policy)
    assert [c.pid for c in record.models["chat"].crashes] == [7]  # a new launch starts afresh


def test_a_restart_to_a_crash_looping_launch_is_blocked_and_keeps_what_runs() -> None:
    plan, policy = fresh_plan(), Policy(limit=1)
    record = crashed([T0], plan, policy)
    start = plan.actions[0]
    restart = start.model_copy(update={"action": "restart", "changed": ("argv",)})
    held = hold(plan.model_copy(update={"actions": (restart,)}), record, T0 + 1, policy)
    (action,) = held.actions
    assert (action.action, action.changed, action.launch) == ("blocked", (), start.launch)


def test_the_book_writes_atomically_privately_and_resets(tmp_path: Path) -> None:
    now = [T0]
    book = CrashBook(tmp_path / "state", Policy(limit=2, first_s=0.5), clock=lambda: now[0])
    plan = fresh_plan()
    first = book.record(entry_of(plan, pid=11), "last words")
    assert (first.model, first.crashes, first.delay_s) == ("chat", 1, 0.5)
    assert first.message == (
        "chat (pid 11) crashed (crash 1 of 2 within 10 min); restarting in 0.5 s"
    )
    assert oct(book.path.stat().st_mode & 0o777) == "0o600"
    assert list(book.path.parent.glob(".crashes.*")) == []
    now[0] += 5
    second = book.record(entry_of(plan, pid=12))
    assert (second.crashes, second.delay_s) == (2, None)
    assert "crash-looping (2 crashes in 5 s)" in second.message
    data = json.loads(book.path.read_text())
    assert data["models"]["chat"]["looping"] is True
    launch = plan.actions[0].launch
    assert launch is not None
    assert book.read().models["chat"].crashes[0] == Crash(
        at=T0, pid=11, variant="chat", launch_hash=launch.hash, last_line="last words"
    )
    assert not book.reset("embed")
    assert book.reset("chat")
    assert book.read() == CrashRecord()


def test_a_damaged_record_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "crashes.json").write_text("{not json")
    with pytest.raises(ApplyError, match=r"crash record is damaged .*; remove it to forget"):
        CrashBook(tmp_path).read()


def test_prune_tells_of_crashes_of_this_boot_only(tmp_path: Path) -> None:
    machine, said, told = Memory(held=1000), [], []
    plan = make_plan(DESIRED, machine.observe(), {})
    mine = entry_of(plan, pid=1).model_copy(update={"boot_id": boot_id()})
    before_reboot = entry_of(plan, pid=2).model_copy(update={"boot_id": "another-boot"})
    write_journal(tmp_path, [mine, before_reboot])

    class Gone(Executor):
        def follow(self, entry: JournalEntry) -> JournalEntry | None:
            return None

    pruner = applier(tmp_path, machine, said, executor=Gone(machine), on_crash=told.append)
    assert {e.pid for e in pruner.prune()} == {1, 2}
    assert told == [mine]
    assert pruner.journal() == []


def test_an_instance_that_exits_while_awaited_is_a_crash(tmp_path: Path) -> None:
    machine, said, told = Memory(held=1000), [], []

    def ready(r: Rendered, alive: Callable[[], bool], t: float) -> tuple[bool, str]:
        machine.pids.clear()  # it exits before it is healthy
        return False, "exited with status 3"

    outcome = applier(tmp_path, machine, said, ready=ready, on_crash=told.append).carry_out(
        make_plan(DESIRED, machine.observe(), {}), DESIRED
    )
    assert outcome.code == 1
    assert [e.pid for e in told] == [4242]
