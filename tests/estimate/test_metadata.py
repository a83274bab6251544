"""GGUF metadata the memory model cannot use: one message naming the file and the key.

Each case damages one value of a real GGUF (written by the `gguf` package, the header then
re-encoded by tests/gguf_edits.py) the way a corrupt file or a careless converter would.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from reconciler.estimate.facts import facts_from_header
from reconciler.gguf.reader import ModelFileError, read_gguf
from reconciler.lockfile import facts_from_file
from tests.gguf_edits import DROP, Raw, edit_metadata
from tests.ggufs import Shape, write_gguf

SMALL = Shape("small", n_layer=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=128, n_vocab=300)
CORRUPT = "the file is corrupt"
CASES = {
    "a list for a number": (
        {"llama.block_count": Raw("array", [1, 2])},
        f"llama.block_count is a list of 2 items, not a whole number; {CORRUPT}",
    ),
    "a number as a string": (
        {"llama.embedding_length": Raw("str", "1e9")},
        f"llama.embedding_length is '1e9', not a whole number; {CORRUPT}",
    ),
    "NaN": (
        {"llama.context_length": Raw("f32", math.nan)},
        f"llama.context_length is nan, not a whole number; {CORRUPT}",
    ),
    "infinity in a per-layer key": (
        {"llama.attention.head_count": Raw("f64", math.inf)},
        f"llama.attention.head_count is inf, not a whole number; {CORRUPT}",
    ),
    "NaN inside a per-layer list": (
        {"llama.feed_forward_length": Raw("array", [128, math.nan], items="f32")},
        f"llama.feed_forward_length[0] is 128.0, not a whole number; {CORRUPT}",
    ),
    "an empty per-layer list": (
        {"llama.attention.head_count_kv": Raw("array", [])},
        f"llama.attention.head_count_kv is an empty list, not one value per layer; {CORRUPT}",
    ),
    "ten million layers": (
        {"llama.block_count": Raw("u64", 10**7)},
        "llama.block_count is 10000000; a model has 1 to 512 layers (llama.cpp's limit): "
        f"{CORRUPT}",
    ),
    "2^40 layers": (
        {"llama.block_count": Raw("u64", 2**40)},
        "llama.block_count is 1099511627776; a model has 1 to 512 layers (llama.cpp's limit): "
        f"{CORRUPT}",
    ),
    "more layers than tensors": (
        {"llama.block_count": Raw("u32", 500)},
        "llama.block_count is 500 but the file has only 21 tensors (each layer has at least "
        f"one): {CORRUPT}",
    ),
    "zero layers": (
        {"llama.block_count": Raw("u32", 0)},
        f"llama.block_count is 0; a model has 1 to 512 layers (llama.cpp's limit): {CORRUPT}",
    ),
    "no block count": (
        {"llama.block_count": DROP},
        "has no llama.block_count, which llama.cpp requires; the file is incomplete or not a "
        "model (convert it again with current llama.cpp)",
    ),
    "a per-layer array a million long": (
        {"llama.feed_forward_length": Raw("array", [], count=10**6)},
        # the reader finds the lie first: the file cannot hold a million items
        "array llama.feed_forward_length claims 1000000 items at byte 262, more than the "
        "file holds (234208 bytes): truncated or corrupt; download it again",
    ),
    "a per-layer array longer than any model": (
        {"llama.feed_forward_length": Raw("array", list(range(5000)))},
        "llama.feed_forward_length is an array of 5000 items, more than one per layer "
        f"(at most 512 layers); {CORRUPT}",
    ),
    "a negative head count": (
        {"llama.attention.head_count": Raw("i32", -4)},
        "llama.attention.head_count is -4, outside 0 to 16384; the file is corrupt or not a "
        "model llama.cpp can load",
    ),
    "a list as the architecture": (
        {"general.architecture": Raw("array", [1], items="u8")},
        f"general.architecture is a list of 1 item, not an architecture's name; {CORRUPT}",
    ),
    "a number as the vocabulary": (
        {"tokenizer.ggml.tokens": Raw("u32", 5)},
        f"tokenizer.ggml.tokens is 5, not a list of tokens; {CORRUPT}",
    ),
    "a true for a count": (
        {"llama.attention.sliding_window": Raw("bool", True)},
        f"llama.attention.sliding_window is True, not a whole number; {CORRUPT}",
    ),
}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(tmp_path_factory.mktemp("m") / "small.gguf", SMALL)


def test_the_undamaged_copy_reads(small: Path, tmp_path: Path) -> None:
    copy = edit_metadata(small, tmp_path / "copy.gguf", {})
    assert facts_from_file(copy) == facts_from_file(small).model_copy(
        update={"fingerprint": facts_from_file(copy).fingerprint}
    )


@pytest.mark.parametrize(("changes", "message"), CASES.values(), ids=CASES.keys())
def test_damaged_metadata_is_one_message_naming_file_and_key(
    small: Path, tmp_path: Path, changes: dict[str, Raw | None], message: str
) -> None:
    path = edit_metadata(small, tmp_path / "bad.gguf", changes)
    with pytest.raises(ModelFileError) as info:
        facts_from_file(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ")
    assert text == f"{path}: {message}"


def test_a_sliding_window_pattern_of_booleans_is_read(small: Path, tmp_path: Path) -> None:
    """gemma3n and gpt-oss write one flag per layer (BOOL items), others a period (u32)."""
    changes: dict[str, Raw | None] = {
        "llama.attention.sliding_window": Raw("u32", 128),
        "llama.attention.sliding_window_pattern": Raw("array", [True, False], items="bool"),
    }
    facts = facts_from_file(edit_metadata(small, tmp_path / "swa.gguf", changes))
    assert [layer.swa for layer in facts.layers] == [True, False]


def test_a_tensor_of_a_layer_index_thousands_of_digits_long(small: Path) -> None:
    """Python refuses to read an integer of over 4300 digits: such a name is no layer."""
    header = read_gguf(small)
    tensors = [(t.name, t.shape, t.type, t.nbytes) for t in header.tensors]
    tensors.append(("blk." + "9" * 5000 + ".attn_norm.weight", (64,), 0, 256))
    facts = facts_from_header(header.metadata, tensors, header.file_size, header.fingerprint)
    assert facts.other_bytes == 256  # counted outside the layers
