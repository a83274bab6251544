"""The journal is written whole or not at all, privately; one apply holds the state folder."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from reconciler.apply.journal import update_journal, write_journal
from reconciler.apply.lock import state_lock
from reconciler.errors import ApplyError
from reconciler.observe.journal import JournalEntry, read_journal


def entry(model: str, pid: int) -> JournalEntry:
    return JournalEntry(model=model, pid=pid, start_time=1.0, gpus=("0",))


def test_journal_round_trip_private_and_atomic(tmp_path: Path) -> None:
    state = tmp_path / "state"
    write_journal(state, [entry("a", 1)])
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    assert oct((state / "journal.json").stat().st_mode & 0o777) == "0o600"
    update_journal(state, lambda es: [*es, entry("b", 2)])
    assert [e.model for e in read_journal(state / "journal.json")] == ["a", "b"]
    assert [p.name for p in state.iterdir()] == ["journal.json"]  # no temporary file left


def test_an_unwritable_state_folder_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ApplyError, match="cannot create the state folder"):
        write_journal(blocker / "state", [])


def _hold(state: Path, seconds: float) -> None:
    with state_lock(state):
        time.sleep(seconds)


def test_a_second_holder_waits_then_gives_up_naming_the_first(tmp_path: Path) -> None:
    holder = multiprocessing.get_context("fork").Process(target=_hold, args=(tmp_path, 3.0))
    holder.start()
    try:
        deadline = time.monotonic() + 5
        while not (tmp_path / "lock").exists() or not (tmp_path / "lock").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        waits: list[str] = []
        with (
            pytest.raises(ApplyError, match=rf"another reconcile \(pid {holder.pid}\) holds"),
            state_lock(tmp_path, timeout_s=0.3, on_wait=waits.append),
        ):
            pass
        assert waits
        assert "waiting for another reconcile" in waits[0]
    finally:
        holder.join()
    with state_lock(tmp_path, timeout_s=0):  # released when its holder ended
        assert (tmp_path / "lock").read_text() == str(os.getpid())


def test_the_lock_of_a_killed_holder_is_free(tmp_path: Path) -> None:
    holder = multiprocessing.get_context("fork").Process(target=_hold, args=(tmp_path, 60.0))
    holder.start()
    time.sleep(0.5)
    holder.kill()
    holder.join()
    with state_lock(tmp_path, timeout_s=1):
        pass
