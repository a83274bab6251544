"""The GGUF header reader on real files written by the `gguf` package, and on broken ones."""

from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path

import gguf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.gguf.ggml import QUANT_SIZES
from reconciler.gguf.reader import ArrayInfo, ModelFileError, read_gguf
from reconciler.gguf.regular import present
from tests.ggufs import SHAPES, Shape, write_gguf

TINY = Shape("tiny", n_layer=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=128, n_vocab=600)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(tmp_path_factory.mktemp("g") / "tiny.gguf", TINY)


def test_ggml_type_table_equals_the_gguf_packages() -> None:
    assert {int(k): v for k, v in gguf.GGML_QUANT_SIZES.items()} == QUANT_SIZES


def test_reads_metadata_and_tensors(tiny: Path) -> None:
    header = read_gguf(tiny)
    assert header.version == 3
    assert header.metadata["general.architecture"] == "llama"
    assert header.metadata["llama.attention.head_count_kv"] == 2
    assert header.metadata["tokenizer.ggml.tokens"] == [t.decode() for t in _tokens(600)]
    by_name = {t.name: t for t in header.tensors}
    assert by_name["blk.0.attn_k.weight"].shape == (64, 32)  # ne0 first, as ggml counts
    assert by_name["blk.0.attn_k.weight"].nbytes == 64 * 32 * 2
    assert len(header.tensors) == 1 + 2 * 9 + 2
    assert header.file_size == tiny.stat().st_size
    assert len(header.fingerprint) == 64


def _tokens(n: int) -> list[bytes]:
    from tests.ggufs import _tokens as make

    return make(n)[0]


def test_long_arrays_keep_only_their_length(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "v.gguf", dataclasses.replace(TINY, n_vocab=50_000))
    tokens = read_gguf(path).metadata["tokenizer.ggml.tokens"]
    assert tokens == ArrayInfo(type=8, count=50_000)


def test_fingerprint_follows_the_header_not_the_path(tmp_path: Path, tiny: Path) -> None:
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(tiny.read_bytes())
    other = write_gguf(tmp_path / "other.gguf", dataclasses.replace(TINY, n_ff=256))
    assert read_gguf(copy).fingerprint == read_gguf(tiny).fingerprint
    assert read_gguf(other).fingerprint != read_gguf(tiny).fingerprint


def test_a_40_gb_class_header_is_read_without_the_weights(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "big.gguf", SHAPES["llama-70b"], sparse=True)
    assert path.stat().st_size > 35 * 2**30
    assert path.stat().st_blocks * 512 < 64 * 2**20  # sparse: the weights were never written
    header = read_gguf(path)
    assert sum(t.nbytes for t in header.tensors) == pytest.approx(path.stat().st_size, rel=1e-3)


def test_split_model_is_read_as_one(tmp_path: Path) -> None:
    whole = read_gguf(write_gguf(tmp_path / "whole.gguf", TINY))
    writer = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama", split_max_tensors=8)
    writer.add_block_count(2)
    for t in whole.tensors:
        writer.add_tensor(t.name, _zeros(t))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    shards = sorted(tmp_path.glob("m-*-of-*.gguf"))
    assert len(shards) == 3
    split = read_gguf(shards[0])
    assert [t.name for t in split.tensors] == [t.name for t in whole.tensors]
    assert split.file_size == sum(p.stat().st_size for p in shards)
    with pytest.raises(ModelFileError, match="give the first shard of a split model"):
        read_gguf(shards[1])
    shards[2].unlink()
    with pytest.raises(ModelFileError, match=r"m-00003-of-00003.gguf: no such file"):
        read_gguf(shards[0])


def _zeros(t: object) -> object:
    import numpy as np

    shape = tuple(reversed(t.shape))  # type: ignore[attr-defined]
    dtype = np.float16 if t.type == 1 else np.float32  # type: ignore[attr-defined]
    return np.zeros(shape, dtype=dtype)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty (0 bytes); download it again"),
        (b"GGML", "not a GGUF file (no GGUF magic at the start)"),
        (b"\x7fELF" + b"\0" * 100, "not a GGUF file (no GGUF magic at the start)"),
        (b"GGUF" + struct.pack("<I", 1) + b"\0" * 16, "GGUF version 1 is not supported"),
        (b"GGUF" + struct.pack("<I", 3 << 24) + b"\0" * 16, "(a big-endian file?)"),
        (b"GGUF" + struct.pack("<IQQ", 3, 2**60, 0), "header claims 1152921504606846976 tensors"),
        (b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 2**62), "key claims 4611686018427387904 bytes"),
    ],
)
def test_broken_files_give_one_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as info:
        read_gguf(path)
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such file; check the path"):
        read_gguf(tmp_path / "nope.gguf")
    with pytest.raises(ModelFileError, match="is a directory"):
        read_gguf(tmp_path)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_truncation_or_corruption_is_a_model_file_error(
    tiny: Path, data: st.DataObject
) -> None:
    raw = bytearray(tiny.read_bytes()[:20_000])
    cut = data.draw(st.integers(0, len(raw)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, 19_999), st.integers(0, 255)), max_size=6))
    for at, value in flips:
        if at < len(raw):
            raw[at] = value
    path = tiny.parent / "mutant.gguf"
    path.write_bytes(bytes(raw[:cut]))
    message = _outcome(path)
    assert message is None or ("\n" not in message and message.startswith(str(path)))


def _outcome(path: Path) -> str | None:
    """None when the file reads, else the error's text (any other exception fails the test)."""
    try:
        read_gguf(path)
    except ModelFileError as exc:
        return str(exc)
    return None


def test_only_a_regular_file_is_opened(tmp_path: Path, tiny: Path) -> None:
    """A named pipe would block open() forever and /dev/zero read zeros forever."""
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.gguf"
    loop.symlink_to(tmp_path / "loop2.gguf")
    (tmp_path / "loop2.gguf").symlink_to(loop)
    dangling = tmp_path / "dangling.gguf"
    dangling.symlink_to(tmp_path / "gone.gguf")
    linked = tmp_path / "linked.gguf"
    linked.symlink_to(tiny)
    cases = {
        fifo: "is a named pipe, not a regular file; give the path of a GGUF file",
        Path(
            "/dev/zero"
        ): "is a character device, not a regular file; give the path of a GGUF file",
        tmp_path: "is a directory, not a regular file; give the path of a GGUF file",
        loop: "is a symbolic link loop (or a chain of too many links); fix the link",
        dangling: f"is a symbolic link to {tmp_path / 'gone.gguf'}, which does not exist",
    }
    for path, message in cases.items():
        with pytest.raises(ModelFileError) as info:
            read_gguf(path)
        assert str(info.value) == f"{path}: {message}"
    assert read_gguf(linked).tensors == read_gguf(tiny).tensors
    # A dangling link is absent (its lock entry is used, as for a missing file); a loop is
    # there and reading it says what is wrong.
    assert (present(loop), present(dangling), present(tmp_path / "nope.gguf")) == (
        True,
        False,
        False,
    )


def test_data_cut_short_after_the_header_is_truncated(tmp_path: Path, tiny: Path) -> None:
    raw = tiny.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(raw[: len(raw) - 1])
    with pytest.raises(ModelFileError) as info:
        read_gguf(cut)
    assert str(info.value) == (
        f"{cut}: truncated: its tensors' data ends at byte {len(raw)} but the file has "
        f"{len(raw) - 1} bytes; download it again"
    )
