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
