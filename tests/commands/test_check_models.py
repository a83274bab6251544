"""`reconcile check`'s verdict on the model files themselves: a GGUF that is present must be
usable and match its lock entry, with or without a profile, on the model's `gguf:` line."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.cli import main
from tests.gguf_edits import Raw, edit_metadata
from tests.ggufs import Shape, write_gguf

SMALL = Shape("small", n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256, n_vocab=500)
DESIRED = (
    "version: 1\n"
    "models:\n"
    "  - name: chat\n"
    "    gguf: models/chat.gguf\n"
    "    port: 8081\n"
    "  - name: coder\n"
    "    gguf: models/coder.gguf\n"
    "    port: 8082\n"
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    write_gguf(tmp_path / "models" / "chat.gguf", SMALL)
    write_gguf(tmp_path / "models" / "coder.gguf", dataclasses.replace(SMALL, n_layer=3))
    (tmp_path / "desired.yaml").write_text(DESIRED)
    assert main(["lock", "desired.yaml"]) == 0
    return tmp_path


def _directory(chat: Path) -> None:
    chat.unlink()
    chat.mkdir()


def _not_gguf(chat: Path) -> None:
    chat.write_text("<html>404 Not Found</html>\n")


def _truncated(chat: Path) -> None:
    raw = chat.read_bytes()
    chat.write_bytes(raw[: len(raw) // 2])


def _corrupt_metadata(chat: Path) -> None:
    edit_metadata(chat, chat, {"llama.context_length": Raw("f32", math.nan)})


def _changed(chat: Path) -> None:
    write_gguf(chat, dataclasses.replace(SMALL, n_ff=512))


def _pipe(chat: Path) -> None:
    chat.unlink()
    os.mkfifo(chat)


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "a directory": (
        _directory,
        "{models}/chat.gguf: is a directory, not a regular file; give the path of a GGUF file",
    ),
    "not a GGUF": (_not_gguf, "{models}/chat.gguf: not a GGUF file (no GGUF magic at the start)"),
    "truncated": (
        _truncated,
        "{models}/chat.gguf: truncated: its tensors' data ends at byte 861632 but the file "
        "has 430816 bytes; download it again",
    ),
    "corrupt metadata": (
        _corrupt_metadata,
        "{models}/chat.gguf: llama.context_length is nan, not a whole number; the file is corrupt",
    ),
    "no longer the locked file": (
        _changed,
        "{models}/chat.gguf no longer matches its entry in desired.lock.yaml; run `reconcile lock "
        "desired.yaml` to update it",
    ),
    "a named pipe": (
        _pipe,
        "{models}/chat.gguf: is a named pipe, not a regular file; give the path of a GGUF file",
    ),
}


@pytest.mark.parametrize(("damage", "message"), CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("profile", [[], ["--profile", "rtx4090"]], ids=["no profile", "profile"])
def test_a_present_gguf_that_cannot_be_used_fails_check(
    project: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[Path], None],
    message: str,
    profile: list[str],
) -> None:
    damage(project / "models" / "chat.gguf")
    assert main(["check", "desired.yaml", *profile]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    expected = message.format(models=project / "models")
    assert lines[0] == f"desired.yaml:4:11: models[0].gguf: {expected}"
    assert lines[1:] == ["1 problem in desired.yaml; fix and run `reconcile check` again."]


def test_as_a_github_annotation_on_the_models_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _not_gguf(project / "models" / "chat.gguf")
    assert main(["check", "--format", "github", "desired.yaml"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"::error file=desired.yaml,line=4,col=11::models[0].gguf: {project}/models/chat.gguf: "
        "not a GGUF file (no GGUF magic at the start)"
    ]


def test_absent_ggufs_are_sized_from_the_lock(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CI: no weights, the lock stands in; nothing to check about files that are not here."""
    for gguf in (project / "models").iterdir():
        gguf.unlink()
    assert main(["check", "desired.yaml", "--profile", "rtx4090"]) == 0
    assert "(absent here: sized from the lock file)" in capsys.readouterr().out


def test_a_broken_lock_fails_check_without_a_profile(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lock's own footer is kept: it is fixed by `reconcile lock`, not by editing."""
    (project / "desired.lock.yaml").write_text("version: 1\nmodels: {chat: 3}\n")
    assert main(["check", "desired.yaml"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "desired.lock.yaml:2:16: models.chat: must be a mapping of keys, got 3",
        "1 problem in desired.lock.yaml; fix and run `reconcile lock` again.",
    ]
