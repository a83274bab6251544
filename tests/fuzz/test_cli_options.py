"""Fuzzing the command line's options: `estimate` with every option given odd values, and
`plan`, `render`, `status` with odd files, output paths and option orders. Each input must end
in exit 0, 1 or 2, without a traceback, within the time bound.

Seeded: a failure's label (seed, index) replays it. `RECONCILER_FUZZ_SCALE=50` runs a long
campaign."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz.harness import Case, run_campaign, scaled
from tests.ggufs import SHAPES, write_gguf

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "desired" / "workstation.yaml")
SEED = 1313

NUMBERS = [
    "0", "1", "-1", "2", "7", "16", "17", "512", "4096", "2147483647", "2147483648",
    "9" * 30, "9" * 5000, "1e9", "0x10", "nan", "inf", "-0", " 4", "4 ", "", "٣", "1_000",
    "all", "auto", "\udcff", "--ctx",
]  # fmt: skip
SPLITS = [
    "1", "1,1", "3,1", "1,1,1", "0,1", "0,0", "1,nan", "inf,1", "-1,2", ",", "1,,1", "1e308,1e308",
    ",".join(["1"] * 17), ",".join(["1"] * 15), "1;1", "0.5,0.5", "",
]  # fmt: skip
ESTIMATE_OPTIONS = [
    "--ctx", "--parallel", "--ubatch", "--batch", "--gpus", "--gpu-layers", "--overhead-mib",
]  # fmt: skip
CHOICES = {
    "--cache-type": ["f16", "q8_0", "q4_0", "iq4_nl", "f32", "Q8_0", ""],
    "--flash-attn": ["on", "off", "auto", "true", ""],
}
SWITCHES = ["--kv-unified", "--swa-full", "--json"]  # not --debug: its traceback is wanted
OUTPUTS = [
    "plan.json", ".", "missing/plan.json", "a" * 300, "full", "null", "\udcff.json",
    "desired.yaml/plan.json", "",
]  # fmt: skip


def _estimate_argv(rng: random.Random, model: Path) -> list[str]:
    argv = ["estimate", str(model)]
    for option in rng.sample(ESTIMATE_OPTIONS, rng.randint(0, 4)):
        argv += [option, rng.choice(NUMBERS)]
    for option, values in CHOICES.items():
        if rng.random() < 0.4:
            argv += [option, rng.choice(values)]
    if rng.random() < 0.5:
        argv += ["--split", rng.choice(SPLITS)]
    argv += [s for s in SWITCHES if rng.random() < 0.2]
    if rng.random() < 0.1:  # options in another order: values may land after other options
        tail = argv[2:]
        rng.shuffle(tail)
        argv[2:] = tail
    return argv


def _plan_argv(rng: random.Random) -> list[str]:
    # not check: its fit errors go to stdout, which the harness reads as exit 1 without a message
    verb = rng.choice(["plan", "plan", "status", "render"])
    argv = [verb]
    if verb != "status":
        argv.append(rng.choice([EXAMPLE, "desired.yaml", "missing.yaml", ".", "\udcff.yaml"]))
    if rng.random() < 0.8:
        argv += ["--profile", rng.choice(["rtx4090", "2x3090", "cpu-only", "rtx409", "", "/"])]
    if verb == "plan":
        if rng.random() < 0.6:
            argv += ["-o", rng.choice(OUTPUTS)]
        argv += [s for s in ("--json", "--detailed-exitcode") if rng.random() < 0.4]
    return argv


def _cases(model: Path, count: int) -> Iterator[Case]:
    rng = random.Random(SEED)
    for index in range(count):
        argv = _estimate_argv(rng, model) if rng.random() < 0.6 else _plan_argv(rng)

        def write(work: Path, argv: list[str] = argv) -> list[str]:
            # devices through links of our own: code that replaced an -o target instead of
            # writing it (as before) must not replace the machine's /dev/null or /dev/full
            (work / "full").symlink_to("/dev/full")
            (work / "null").symlink_to("/dev/null")
            return argv

        yield Case(f"seed {SEED} #{index}", write)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(tmp_path_factory.mktemp("m") / "gqa.gguf", SHAPES["gqa"], sparse=True)


def test_command_line_options(model: Path, tmp_path: Path) -> None:
    campaign = run_campaign("cli options", _cases(model, scaled(200)), tmp_path)
    assert campaign.failures == []
