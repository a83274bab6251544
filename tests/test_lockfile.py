"""The lock file: written from GGUFs present, used where they are absent, checked when both."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main
from reconciler.config.loader import load_desired
from reconciler.config.yamlfile import dump_yaml, parse_yaml
from reconciler.errors import ConfigErrors
from reconciler.gguf.reader import ModelFileError
from reconciler.lockfile import (
    LockFile,
    LockWriteError,
    lock_path,
    parse_lock,
    read_lock,
    resolve_facts,
    write_lock,
)
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


def test_a_dangling_link_uses_the_lock_entry_and_a_loop_is_an_error(project: Path) -> None:
    """CI checkouts commit links into /srv/models where the weights are absent."""
    assert main(["lock", str(project)]) == 0
    lock = read_lock(lock_path(project))
    chat = load_desired(project).spec.model_named("chat")
    assert chat is not None
    assert chat.gguf is not None
    gguf = Path(chat.gguf)
    gguf.unlink()
    gguf.symlink_to(project.parent / "srv" / "chat.gguf")
    resolved = resolve_facts(chat, lock, lock_path(project))
    assert (resolved.origin, resolved.warning) == ("lock", None)
    gguf.unlink()
    gguf.symlink_to(gguf)
    with pytest.raises(ModelFileError) as info:
        resolve_facts(chat, lock, lock_path(project))
    assert str(info.value) == (
        f"{gguf}: is a symbolic link loop (or a chain of too many links); fix the link"
    )


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


def test_the_lock_is_json_under_comments_and_old_readers_agree(project: Path) -> None:
    assert main(["lock", str(project)]) == 0
    path = lock_path(project)
    text = path.read_text()
    body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))
    data = json.loads(body)
    lock = read_lock(path)
    assert lock is not None
    assert LockFile.model_validate(data) == lock
    # What a reader that takes it as YAML (this tool before it wrote JSON) gets:
    assert LockFile.model_validate(parse_yaml(text, str(path)).data) == lock


def test_an_old_yaml_lock_file_is_still_read(project: Path) -> None:
    assert main(["lock", str(project)]) == 0
    path = lock_path(project)
    lock = read_lock(path)
    assert lock is not None
    path.write_text(dump_yaml(lock.model_dump(mode="json"), "# an old lock\n"))
    assert path.read_text().startswith("# an old lock\nmodels:\n")
    assert parse_lock(path.read_text(), str(path)) == lock


def _lock_with(project: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    assert main(["lock", str(project)]) == 0
    path = lock_path(project)
    data = json.loads(path.read_text().split("\n", 3)[3])
    change(data["models"]["chat"]["facts"])
    path.write_text(json.dumps(data, indent=1))
    return path


def _negative(facts: dict[str, Any]) -> None:
    facts["layers"][1]["bytes_cuda"] = -90979 * 2**20


def _no_layers(facts: dict[str, Any]) -> None:
    facts["layers"] = []


def _many_layers(facts: dict[str, Any]) -> None:
    facts["layers"] = facts["layers"][:1] * 5000


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _negative,
            "models.chat.facts.layers[1].bytes_cuda: input should be greater than or equal to 0",
        ),
        (_no_layers, "models.chat.facts.layers: must not be empty"),
        (
            _many_layers,
            "models.chat.facts.layers: at most 512 layers (llama.cpp's limit), not 5000; the "
            "entry is corrupt",
        ),
    ],
    ids=["negative size", "no layers", "5000 layers"],
)
def test_a_lock_entry_is_held_to_the_bounds_of_gguf_facts(
    project: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    path = _lock_with(project, change)
    with pytest.raises(ConfigErrors) as info:
        read_lock(path)
    assert [e.render().split(": ", 1)[1] for e in info.value.errors] == [message]
    assert info.value.render().endswith("fix and run `reconcile lock` again.")


def test_a_lock_file_must_be_a_regular_file(project: Path) -> None:
    path = lock_path(project)
    os.mkfifo(path)  # open() would wait for a writer forever
    with pytest.raises(ConfigErrors) as info:
        read_lock(path)
    assert info.value.errors[0].render() == (
        f"{path}: is a named pipe, not a regular file; give the path of a lock file"
    )


def test_lock_where_it_cannot_write_says_so(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = lock_path(project)
    path.mkdir()  # in the way of the lock file: even root cannot replace it
    assert main(["lock", str(project)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        f"{path}: cannot write the lock file: it is a directory; remove or rename that directory"
    )
    assert [p.name for p in project.parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_lock_in_a_read_only_folder_says_so(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project.parent.chmod(0o555)
    try:
        assert main(["lock", str(project)]) == 1
    finally:
        project.parent.chmod(0o755)
    assert capsys.readouterr().err.strip() == (
        f"{lock_path(project)}: cannot write the lock file: Permission denied; run `reconcile "
        f"lock` where you may write to {project.parent}, or fix that folder's permissions"
    )


def test_a_broken_lock_is_replaced_where_every_gguf_is_present(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = lock_path(project)
    path.write_text("version: 1\nmodels: [\n")
    assert main(["lock", str(project)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("  replaced a lock file that could not be read (")
    assert read_lock(path) is not None
    path.write_text("version: 7\n")
    (project.parent / "models" / "chat.gguf").unlink()  # its entry is needed now
    assert main(["lock", str(project)]) == 1
    assert f"{path}:1:10: version" in capsys.readouterr().err


def test_a_corrupt_gguf_is_not_hidden_behind_a_broken_lock(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only an absent file needs the old lock's entry; a present one that cannot be read is the
    problem to report."""
    lock_path(project).write_text("version: 7\n")
    chat = project.parent / "models" / "chat.gguf"
    chat.write_bytes(b"not a gguf at all")
    assert main(["lock", str(project)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"{chat}: not a GGUF file (no GGUF magic at the start)"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_lock_on_a_full_disk_says_no_space(project: Path, tmp_path: Path) -> None:
    """/dev/full fails every write with ENOSPC: the message says so, not permissions."""
    lock = LockFile(models={})
    target = tmp_path / "full.lock.yaml"
    real_mkstemp = tempfile.mkstemp

    def full(*_args: Any, **_kwargs: Any) -> tuple[int, str]:
        fd, name = real_mkstemp(dir=tmp_path)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), name

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "mkstemp", full)
        with pytest.raises(LockWriteError) as info:
            write_lock(lock, target)
    assert str(info.value) == (
        f"{target}: cannot write the lock file: no space left on the device holding "
        f"{tmp_path}; free some space"
    )
