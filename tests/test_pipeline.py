"""The pipeline: one observer for its life, GGUF facts and the lock file read again only when
their files change, and a plan that records digests of what it was computed from."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import reconciler
from reconciler import lockfile, pipeline
from reconciler.cli import main
from reconciler.errors import ConfigErrors
from reconciler.observe import observer
from reconciler.pipeline import Pipeline, file_identity, tool_version
from tests.ggufs import Shape, write_gguf
from tests.observe.fake_nvml import FakeGpu, FakeNvml

SMALL = Shape("small", n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256, n_vocab=500)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    write_gguf(tmp_path / "models" / "chat.gguf", SMALL)
    desired = tmp_path / "desired.yaml"
    desired.write_text(
        "version: 1\nmodels:\n"
        "  - {name: chat, gguf: models/chat.gguf, port: 8081}\n"
        "  - {name: lost, gguf: models/lost.gguf, port: 8082}\n"
    )
    (tmp_path / "models" / "lost.gguf").write_bytes(b"GGUF")  # truncated: cannot be read
    return desired


def counting(monkeypatch: pytest.MonkeyPatch, name: str, module: Any = pipeline) -> list[Any]:
    calls: list[Any] = []
    real: Callable[..., Any] = getattr(module, name)

    def wrapper(*args: Any) -> Any:
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def lock_parses(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Calls of the lock file's parser, with its per-process cache emptied first."""
    monkeypatch.setattr(lockfile, "_CACHE", {})
    return counting(monkeypatch, "parse_lock", lockfile)


def test_inputs_are_digests_of_what_the_plan_used(project: Path) -> None:
    plan = Pipeline(profile="rtx4090").run(project)
    assert plan.inputs is not None
    # The file's bytes and what they resolve to (see test_stale for a changed variable).
    assert plan.inputs.desired == Pipeline().load(project).sha256
    assert plan.inputs.desired != hashlib.sha256(project.read_bytes()).hexdigest()
    assert plan.inputs.lock is None  # no lock file beside it
    assert plan.inputs.tool_version == tool_version()
    assert plan.inputs.observed == plan.observed
    assert set(plan.inputs.facts_by_model) == {"chat", "lost"}  # facts, and a problem
    assert [a.action for a in plan.actions] == ["start", "blocked"]


def test_a_gguf_is_read_again_only_when_it_changes(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = counting(monkeypatch, "facts_from_file")
    p = Pipeline(profile="rtx4090")
    first = p.run(project)
    assert p.run(project) == first
    assert len(reads) == 2  # chat, and the broken one (remembered as broken)
    gguf = project.parent / "models" / "chat.gguf"
    os.utime(gguf, ns=(1, 1))
    again = p.run(project)
    assert [Path(r).name for r in reads[2:]] == ["chat.gguf"]
    assert again.inputs == first.inputs  # the same bytes: the same facts
    write_gguf(gguf, Shape("small", n_layer=3, n_embd=128, n_head=4, n_ff=256, n_vocab=500))
    changed = p.run(project)
    assert len(reads) == 4
    assert changed.inputs is not None
    assert first.inputs is not None
    assert changed.inputs.facts != first.inputs.facts


def test_the_lock_file_is_parsed_once_for_every_profile_and_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parses = lock_parses(monkeypatch)
    example = str(ROOT / "desired" / "workstation.yaml")
    argv = ["check", example, example, "--profile", "rtx4090", "--profile", "rtx3060-12g"]
    assert main(argv) == 0
    assert len(parses) == 1
    assert capsys.readouterr().out.count("models fit") == 2


def test_a_broken_lock_file_is_reported_each_time_until_it_changes(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = project.with_name("desired.lock.yaml")
    lock.write_text("version: 7\n")
    parses = lock_parses(monkeypatch)
    p = Pipeline(profile="rtx4090")
    for _ in range(2):
        with pytest.raises(ConfigErrors, match=r"desired\.lock\.yaml:1:10: version"):
            p.run(project)
    assert len(parses) == 1
    lock.write_text("version: 1\nmodels: {}\n")
    plan = p.run(project)
    assert plan.inputs is not None
    assert plan.inputs.lock == hashlib.sha256(lock.read_bytes()).hexdigest()


def test_one_observer_made_only_for_the_real_machine(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[object] = []
    real = observer.Observer

    class Counted(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any) -> None:
            made.append(self)
            super().__init__(*args)

    monkeypatch.setattr(observer, "Observer", Counted)
    Pipeline(profile="rtx4090").run(project)
    assert made == []
    p = Pipeline(nvml_module=FakeNvml([FakeGpu()]), state_dir=tmp_path / "state")
    for _ in range(3):
        plan = p.run(project)
    assert len(made) == 1
    assert plan.source == "nvml"


def test_file_identity() -> None:
    assert file_identity(ROOT / "no-such-file") is None
    ((path, _mtime, size, _ino),) = file_identity(ROOT / "README.md") or ()
    assert (path, size) == (str(ROOT / "README.md"), (ROOT / "README.md").stat().st_size)


def test_tool_version_where_the_package_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    tool_version.cache_clear()
    try:
        assert tool_version() == reconciler.__version__
        monkeypatch.delattr(reconciler, "__version__")
        tool_version.cache_clear()
        assert tool_version() == "unknown"
    finally:
        monkeypatch.undo()
        tool_version.cache_clear()
    assert tool_version() == importlib.metadata.version("gpu-reconciler")
