"""The fuzzing runner itself: it must see a traceback, a hang and a message without a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz import harness
from tests.fuzz.harness import Case, run_campaign, run_cli


def test_a_valid_run_is_exit_0() -> None:
    outcome = run_cli(["schema", "profile"])
    assert outcome.code == 0
    assert outcome.traceback is None
    assert '"title"' in outcome.out


def test_a_missing_file_is_exit_1_naming_it(tmp_path: Path) -> None:
    cases = [Case("missing", lambda _w: ["check", "nope.yaml"], names="nope.yaml")]
    campaign = run_campaign("harness-selftest-missing", cases, tmp_path)
    assert campaign.failures == []
    assert campaign.exits == {1: 1}


def test_an_escaping_exception_is_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(_argv: object) -> int:
        raise RecursionError("deep")

    monkeypatch.setattr(harness, "main", boom)
    campaign = run_campaign("harness-selftest-boom", [Case("boom", lambda _w: [])], tmp_path)
    assert campaign.tracebacks == 1
    assert "RecursionError: deep" in campaign.failures[0]


def test_a_run_over_the_limit_is_a_hang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def spin(_argv: object) -> int:
        while True:
            pass

    monkeypatch.setattr(harness, "TIME_LIMIT_S", 0.2)
    monkeypatch.setattr(harness, "main", spin)
    outcome = harness.run_cli([], limit_s=0.2)
    assert outcome.hung
