"""Corrupt GGUF files through `estimate`, `lock`, `check` and `plan`: no traceback, a bounded
time, and a failure that names the file.

Real GGUFs are written with the `gguf` package (tests/ggufs.py: llama, gemma3 with a sliding
window, a hybrid with per-layer KV heads, mamba2), then damaged two ways: metadata VALUES
re-encoded (tests/gguf_edits.py) with wrong types, NaN and infinity, huge, negative and zero
counts, empty and huge arrays, strings for numbers, missing keys; and BYTES cut short or
flipped. Each damaged file is run through one command, as a user would meet it: `estimate
model.gguf`, or `lock`, `check` (with or without a profile) and `plan --profile` on a small
desired file naming it (half the time with a lock file made from the undamaged model beside
it). Seeded: a failure's label replays it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
from pathlib import Path

import pytest

from reconciler.lockfile import LockEntry, LockFile, dump_lock, facts_from_file
from tests.fuzz.harness import Case, run_campaign, scaled
from tests.gguf_edits import DROP, Raw, edit_metadata
from tests.ggufs import Shape, write_gguf

SEED = 13
BASE = Shape("fz", n_layer=3, n_embd=32, n_head=2, n_head_kv=1, n_ff=64, n_vocab=260)
SHAPES = {
    "llama": BASE,
    "gemma3": dataclasses.replace(BASE, name="fz-g3", arch="gemma3", n_swa=128, tied=True),
    "hybrid": dataclasses.replace(
        BASE,
        name="fz-lfm2",
        arch="lfm2",
        n_head_kv=[0, 1, 0],
        extra={"lfm2.shortconv.l_cache": 3},
    ),
    "mamba2": dataclasses.replace(
        BASE,
        name="fz-mamba2",
        arch="mamba2",
        extra={
            "mamba2.ssm.conv_kernel": 4,
            "mamba2.ssm.inner_size": 64,
            "mamba2.ssm.state_size": 16,
            "mamba2.ssm.group_count": 1,
        },
    ),
}
# The keys the memory model reads (per architecture, `{arch}.` is put in front).
ARCH_KEYS = [
    "block_count",
    "embedding_length",
    "context_length",
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "attention.sliding_window",
    "attention.sliding_window_pattern",
    "attention.key_length_mla",
    "ssm.conv_kernel",
    "ssm.inner_size",
    "ssm.state_size",
    "ssm.group_count",
    "shortconv.l_cache",
    "wkv.head_size",
    "vocab_size",
]
OTHER_KEYS = ["general.architecture", "general.alignment", "tokenizer.ggml.tokens"]
DESIRED = "version: 1\nmodels:\n  - {name: chat, gguf: model.gguf, port: 8081, ctx: 4096}\n"
COMMANDS: list[list[str]] = [
    ["estimate", "model.gguf"],
    ["estimate", "model.gguf", "--ctx", "32768", "--parallel", "4"],
    ["lock", "desired.yaml"],
    ["check", "desired.yaml"],
    ["check", "desired.yaml", "--profile", "rtx4090"],
    ["plan", "desired.yaml", "--profile", "2x3090"],
]


def _value(rng: random.Random) -> tuple[str, Raw | None]:
    """A damaged metadata value and how to describe it."""
    big = rng.choice([10**7, 2**31, 2**32 - 1, 2**40, 2**63 - 1])
    choices: list[tuple[str, Raw | None]] = [
        ("missing", DROP),
        ("'1e9' as a string", Raw("str", "1e9")),
        ("a word", Raw("str", "many")),
        ("NaN", Raw("f32", math.nan)),
        ("infinity", Raw("f64", math.inf)),
        ("-infinity", Raw("f32", -math.inf)),
        ("a float", Raw("f32", 12.5)),
        ("true", Raw("bool", True)),
        ("zero", Raw("u32", 0)),
        ("negative", Raw("i32", -rng.randint(1, 2**31))),
        ("negative i64", Raw("i64", -(2**62))),
        (f"huge {big}", Raw("u64", big)),
        ("u8 255", Raw("u8", 255)),
        ("an empty array", Raw("array", [])),
        ("an array of a few", Raw("array", [rng.randint(0, 64) for _ in range(rng.randint(1, 9))])),
        ("an array of huge", Raw("array", [2**32 - 1] * 3)),
        ("an array of floats", Raw("array", [math.nan, 1.0], items="f32")),
        ("an array of strings", Raw("array", ["a", "b"], items="str")),
        ("an array of 5000", Raw("array", list(range(5000)))),
        ("an array that lies (10^6)", Raw("array", [1, 2], count=10**6)),
        ("an array of bools", Raw("array", [True, False, True], items="bool")),
    ]
    return rng.choice(choices)


def _flip(raw: bytes, rng: random.Random) -> tuple[str, bytes]:
    data = bytearray(raw)
    if rng.random() < 0.5:
        cut = rng.randint(0, len(data))
        return f"cut at {cut}", bytes(data[:cut])
    header = min(len(data), 12_000)  # the header: where a flip changes what is read
    spots = [rng.randrange(header) for _ in range(rng.randint(1, 8))]
    for at in spots:
        data[at] = rng.randrange(256)
    return f"bytes {spots} flipped", bytes(data)


def _write_damaged(
    work: Path,
    *,
    base: Path,
    changes: dict[str, Raw | None],
    flip: random.Random | None,
    argv: list[str],
    lock: str | None,
) -> list[str]:
    path = edit_metadata(base, work / "model.gguf", changes)
    if flip is not None:
        _how, raw = _flip(path.read_bytes(), flip)
        path.write_bytes(raw)
    (work / "desired.yaml").write_text(DESIRED)
    if lock is not None:
        (work / "desired.lock.yaml").write_text(lock)
    return list(argv)


def _cases(bases: dict[str, Path], locks: dict[str, str], count: int) -> list[Case]:
    out = []
    for index in range(count):
        rng = random.Random(SEED * 1_000_003 + index)
        arch = rng.choice(list(bases))
        base = bases[arch]
        changes: dict[str, Raw | None] = {}
        what = []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            key = rng.choice(ARCH_KEYS + ARCH_KEYS + OTHER_KEYS)
            key = key if key in OTHER_KEYS else f"{arch}.{key}"
            described, raw = _value(rng)
            changes[key] = raw
            what.append(f"{key}={described}")
        bytes_too = rng.random() < 0.25
        flip_rng = random.Random(rng.random())
        argv = rng.choice(COMMANDS)
        with_lock = rng.random() < 0.5
        label = f"seed {SEED} #{index}: {arch} {', '.join(what)}"

        write = functools.partial(
            _write_damaged,
            base=base,
            changes=changes,
            flip=flip_rng if bytes_too else None,
            argv=argv,
            lock=locks[arch] if with_lock else None,
        )
        out.append(Case(label + (" + bytes" if bytes_too else ""), write, names="model.gguf"))
    return out


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bases")
    return {arch: write_gguf(folder / f"{arch}.gguf", shape) for arch, shape in SHAPES.items()}


def _lock_text(path: Path) -> str:
    entry = LockEntry(gguf="model.gguf", facts=facts_from_file(path))
    return dump_lock(LockFile(models={"chat": entry}))


def test_the_undamaged_models_plan(bases: dict[str, Path]) -> None:
    """The fuzzer's starting points are sound: every base model reads and locks."""
    for path in bases.values():
        assert facts_from_file(path).n_layer == 3


def test_corrupt_ggufs_end_in_one_message(bases: dict[str, Path], tmp_path: Path) -> None:
    locks = {arch: _lock_text(path) for arch, path in bases.items()}
    campaign = run_campaign("gguf", _cases(bases, locks, scaled(900)), tmp_path)
    assert campaign.failures == []


def _byte_cases(bases: dict[str, Path], count: int) -> list[Case]:
    out = []
    for index in range(count):
        rng = random.Random(SEED * 7_000_003 + index)
        arch = rng.choice(list(bases))
        how, raw = _flip(bases[arch].read_bytes(), rng)
        argv = rng.choice(COMMANDS)

        def write(work: Path, raw: bytes = raw, argv: list[str] = argv) -> list[str]:
            (work / "model.gguf").write_bytes(raw)
            (work / "desired.yaml").write_text(DESIRED)
            return list(argv)

        out.append(Case(f"seed {SEED} bytes #{index}: {arch} {how}", write, names="model.gguf"))
    return out


def test_cut_and_flipped_ggufs_end_in_one_message(bases: dict[str, Path], tmp_path: Path) -> None:
    campaign = run_campaign("gguf-bytes", _byte_cases(bases, scaled(300)), tmp_path)
    assert campaign.failures == []
