"""`reconcile estimate` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.cli import main
from tests.ggufs import SHAPES, write_gguf


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(tmp_path_factory.mktemp("m") / "gqa.gguf", SHAPES["gqa"], sparse=True)


def test_table(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", str(model), "--ctx", "8192", "--cache-type", "q8_0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{model}: llama, 8 layers,")
    assert "ctx 8192 x1, q8_0 cache, flash attention auto" in lines[0]
    assert lines[1].split() == [
        "device",
        "model",
        "context",
        "compute",
        "output",
        "overhead",
        "total",
    ]
    assert [line.split()[0] for line in lines[2:5]] == ["host", "cuda0", "total"]
    assert lines[3].split()[5] == "588.0"


def test_json_keys_scripts_rely_on(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", str(model), "--json", "--gpus", "2", "--split", "1,1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data["devices"]] == ["host", "cuda0", "cuda1"]
    keys = {
        "name",
        "model_mib",
        "context_mib",
        "compute_mib",
        "output_mib",
        "overhead_mib",
        "total_mib",
    }
    assert all(set(d) == keys for d in data["devices"])
    assert data["total_mib"] == pytest.approx(sum(d["total_mib"] for d in data["devices"]), 0.01)


def test_cpu_only(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", str(model), "--json", "--gpus", "0"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data["devices"]] == ["host"]
    assert data["devices"][0]["overhead_mib"] == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty (0 bytes); download it again"),
        (b"GGUF\x03\x00\x00\x00" + bytes(range(256)) * 4, "truncated or corrupt"),
        (b"\x89PNG\r\n" + b"\0" * 64, "not a GGUF file"),
    ],
)
def test_bad_files_give_one_line_and_exit_1(
    tmp_path: Path, content: bytes, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(content)
    assert main(["estimate", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"{path}: ")
    assert message in err


def test_truncated_real_file(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(model.read_bytes()[:5000])
    assert main(["estimate", str(cut)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{cut}: ")
    assert "truncated or corrupt; download it again" in err
    assert err.count("\n") == 1


# Options a desired file would refuse, or that name more GPUs than there are: one line each,
# exit 1, before the GGUF is read.
REFUSED = [
    (["--ctx", "0"], "argument --ctx: must be a positive integer, got 0"),
    (["--ctx", "-5"], "argument --ctx: must be a positive integer, got -5"),
    (["--ctx", "8k"], 'argument --ctx: must be a positive integer, got "8k"'),
    (["--ctx", "9" * 40], "argument --ctx: must be at most 2147483647, got 999999999999"),
    (["--parallel", "0"], "argument --parallel: must be a positive integer, got 0"),
    (["--ubatch", "0"], "argument --ubatch: must be a positive integer, got 0"),
    (["--batch", "0"], "argument --batch: must be a positive integer, got 0"),
    (["--gpus", "-1"], "argument --gpus: must be an integer >= 0, got -1"),
    (["--gpu-layers", "-1"], 'argument --gpu-layers: must be "all", "auto" or a number of'),
    (["--overhead-mib", "-500"], "argument --overhead-mib: must be a whole number of MiB >= 0"),
    (["--cache-type", "f32"], "argument --cache-type: invalid choice: 'f32'"),
    (["--split", "1,nan"], "argument --split: must be shares (numbers >= 0, not all 0)"),
    (["--split", "0,0"], "argument --split: must be shares (numbers >= 0, not all 0)"),
    (
        ["--split", "3,1"],
        "--split 3,1 gives 2 shares for --gpus 1 (the default): give one share per GPU, "
        "e.g. --gpus 2 --split 3,1",
    ),
    (
        ["--gpus", "2", "--split", "1,1,1"],
        "--split 1,1,1 gives 3 shares for --gpus 2: give one share per GPU, "
        "e.g. --gpus 3 --split 1,1,1",
    ),
    (["--gpus", "0", "--split", "1"], "--split 1: a CPU-only build (--gpus 0) splits nothing"),
    (["--gpus", "17"], "--gpus 17: llama.cpp drives at most 16 GPUs"),
    (
        ["--cache-type", "q8_0", "--flash-attn", "off"],
        "--cache-type q8_0: q8_0 quantizes the V cache, which llama.cpp allows only with flash "
        "attention; set --flash-attn on (or auto), or --cache-type f16",
    ),
]


@pytest.mark.parametrize(("options", "message"), REFUSED, ids=[" ".join(o) for o, _ in REFUSED])
def test_refused_options_are_one_line_and_exit_1(
    options: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The file does not exist: options are judged before it is read.
    assert main(["estimate", "/nonexistent/m.gguf", *options]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"reconcile estimate: {message}")


def test_every_problem_of_the_options_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["estimate", "m.gguf", "--gpus", "1", "--split", "1,1"]
    assert main([*argv, "--cache-type", "q4_0", "--flash-attn", "off"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1].strip() for line in lines] == [
        "--split 1,1 gives 2 shares for --gpus 1",
        "--cache-type q4_0",
    ]


def _model_bytes(model: Path, options: list[str], capsys: pytest.CaptureFixture[str]) -> float:
    assert main(["estimate", str(model), "--json", *options]) == 0
    data = json.loads(capsys.readouterr().out)
    return float(sum(d["model_mib"] for d in data["devices"]))


@pytest.mark.parametrize("layers", ["0", "2", "8", "all"])
@pytest.mark.parametrize(
    "split",
    [
        ["--gpus", "2", "--split", "1,1"],
        ["--gpus", "2", "--split", "0,1"],
        ["--gpus", "3", "--split", "5,0,1"],
    ],
)
def test_every_tensor_is_placed_whatever_the_split(
    model: Path, layers: str, split: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The weights on all devices together do not depend on how the GPU layers are split:
    no layer and no output head is lost or counted twice."""
    one_gpu = _model_bytes(model, ["--gpu-layers", layers], capsys)
    split_bytes = _model_bytes(model, ["--gpu-layers", layers, *split], capsys)
    assert split_bytes == pytest.approx(one_gpu, abs=0.05)  # MiB, as rounded in the JSON
