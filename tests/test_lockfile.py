"""The lock file: written from GGUFs present, used where they are absent, checked when both."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.config.loader import load_desired
from reconciler.errors import ConfigErrors
from reconciler.gguf.reader import ModelFileError
from reconciler.lockfile import lock_path, read_lock, resolve_facts
from tests.ggufs import Shape, write_gguf

SMALL = Shape("small", n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256, n_vocab=500)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    write_gguf(tmp_path / "models" / "chat.gguf", SMALL)
    write_gguf(tmp_path / "models" / "coder.gguf", dataclasses.replace(SMALL, n_layer=3))
    desired = tmp_path / "desired.yaml"
    desired.write_text(
        "version: 1\nmodels:\n"
        "  - {name: chat, gguf: models/chat.gguf, port: 8081}\n"
        "  - {name: coder, gguf: models/coder.gguf, port: 8082}\n"
        "  - {name: big, backend: vllm, model: org/big, vram_mib: 9000, port: 8000}\n"
    )
    return desired


def test_lock_round_trip_and_use_without_the_weights(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lock", str(project)]) == 0
    out = capsys.readouterr().out
    assert "chat: added from" in out
    assert f"wrote {lock_path(project)}: 2 models" in out
    text = lock_path(project).read_text()
    assert text.startswith("# Written by `reconcile lock`")
    lock = read_lock(lock_path(project))
    assert lock is not None
    assert set(lock.models) == {"chat", "coder"}
    assert lock.models["coder"].facts.n_layer == 3

    desired = load_desired(project).spec
    chat = desired.model_named("chat")
    assert chat is not None
    present = resolve_facts(chat, lock, lock_path(project))
    assert (present.origin, present.warning) == ("gguf", None)
    (project.parent / "models" / "chat.gguf").unlink()  # CI: no weights
    absent = resolve_facts(chat, lock, lock_path(project))
    assert absent.origin == "lock"
    assert absent.facts == present.facts

    # Locking again where the file is absent keeps its entry.
    assert main(["lock", str(project)]) == 0
    assert "chat: kept (file absent here:" in capsys.readouterr().out


def test_a_changed_gguf_is_reported(project: Path) -> None:
    assert main(["lock", str(project)]) == 0
    write_gguf(project.parent / "models" / "chat.gguf", dataclasses.replace(SMALL, n_ff=512))
    lock = read_lock(lock_path(project))
    chat = load_desired(project).spec.model_named("chat")
    assert chat is not None
    resolved = resolve_facts(chat, lock, lock_path(project))
    assert resolved.warning == (
        f"{chat.gguf} no longer matches its entry in {lock_path(project)}; "
        "run `reconcile lock` to update it"
    )


def test_no_gguf_and_no_lock_entry_says_what_to_do(project: Path) -> None:
    chat = load_desired(project).spec.model_named("chat")
    assert chat is not None
    (project.parent / "models" / "chat.gguf").unlink()
    with pytest.raises(ModelFileError, match="run `reconcile lock` where the file exists"):
        resolve_facts(chat, None, lock_path(project))


def test_a_broken_lock_file_is_located(project: Path) -> None:
    lock_path(project).write_text("version: 1\nmodels:\n  chat: {gguf: x.gguf, facts: 3}\n")
    with pytest.raises(ConfigErrors) as info:
        read_lock(lock_path(project))
    assert info.value.errors[0].render() == (
        f"{lock_path(project)}:3:31: models.chat.facts: must be a mapping of keys, got 3"
    )
