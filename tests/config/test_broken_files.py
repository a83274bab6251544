"""Every file under broken/ is a case: its trailing `# expect:` lines are the exact messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.config.loader import load_desired
from reconciler.errors import ConfigErrors

BROKEN = Path(__file__).parent / "broken"
CASES = sorted(BROKEN.glob("*.yaml"))


def expected(path: Path) -> list[str]:
    prefix = "# expect: "
    return [
        line[len(prefix) :]
        for line in path.read_bytes().decode("utf-8", "replace").splitlines()  # some are not UTF-8
        if line.startswith(prefix)
    ]


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_broken_file_reports_exactly(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BROKEN)
    monkeypatch.delenv("RECONCILER_TEST_UNSET_DIR", raising=False)
    want = expected(path)
    assert want, f"{path.name} has no `# expect:` lines"
    with pytest.raises(ConfigErrors) as info:
        load_desired(path.name)
    assert [e.render() for e in info.value.errors] == want
