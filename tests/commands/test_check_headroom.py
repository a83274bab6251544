"""`reconcile check --profile` warns when the default reserve_fraction silently overrides a
reserve_mib set alone; the warning never changes the exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli import main

OVERRIDDEN = (
    "policy.headroom.reserve_mib: 2048 MiB is overridden on profile h100-80g: the default "
    "reserve_fraction 0.10 keeps 8156 MiB of GPU 0 (81559 MiB) free, the larger applies; "
    "set reserve_fraction: 0 to use reserve_mib alone, or set both"
)


def desired(tmp_path: Path, headroom: str) -> Path:
    path = tmp_path / "desired.yaml"
    path.write_text(f"version: 1\npolicy:\n  headroom:\n{headroom}models: []\n")
    return path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_a_reserve_mib_the_default_fraction_overrides_is_a_warning_at_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = desired(tmp_path, "    reserve_mib: 2048\n")
    code, out, err = run(["check", str(path), "--profile", "h100-80g"], capsys)
    assert (code, err) == (0, "")
    assert out[1] == f"warning: {path}:4:18: {OVERRIDDEN}"
    assert out[2].startswith("profile h100-80g: ")


def test_as_a_github_annotation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = desired(tmp_path, "    reserve_mib: 2048\n")
    argv = ["check", str(path), "--profile", "h100-80g", "--format", "github"]
    code, out, err = run(argv, capsys)
    assert (code, out, err) == (0, [f"::warning file={path},line=4,col=18::{OVERRIDDEN}"], "")


def test_one_warning_per_profile_naming_the_gpu_with_the_largest_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = desired(tmp_path, "    reserve_mib: 1024\n")
    argv = ["check", str(path), "--profile", "4090+3060", "--profile", "2x3090"]
    code, out, _err = run(argv, capsys)
    assert code == 0
    assert [line.split(": ", 3)[-1] for line in out if line.startswith("warning:")] == [
        "1024 MiB is overridden on profile 4090+3060: the default reserve_fraction 0.10 keeps "
        "2456 MiB of GPU 0 (24564 MiB) free (likewise on GPU 1), the larger applies; "
        "set reserve_fraction: 0 to use reserve_mib alone, or set both",
        "1024 MiB is overridden on profile 2x3090: the default reserve_fraction 0.10 keeps "
        "2458 MiB of GPU 0 (24576 MiB) free (likewise on GPU 1), the larger applies; "
        "set reserve_fraction: 0 to use reserve_mib alone, or set both",
    ]


@pytest.mark.parametrize(
    ("headroom", "profile"),
    [
        ("    reserve_mib: 2048\n", "rtx3060-12g"),  # 10 % of 12288 is 1229: reserve_mib wins
        ("    reserve_mib: 2048\n", "cpu-only"),
        ("    reserve_mib: 2048\n    reserve_fraction: 0.10\n", "h100-80g"),  # both: chosen
        ("    reserve_fraction: 0.05\n", "h100-80g"),
        ("    {}\n", "h100-80g"),
    ],
)
def test_no_warning_where_nothing_is_silently_overridden(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], headroom: str, profile: str
) -> None:
    code, out, err = run(["check", str(desired(tmp_path, headroom)), "--profile", profile], capsys)
    assert (code, err) == (0, "")
    assert not any(line.startswith("warning:") for line in out)


def test_the_warning_does_not_change_a_failing_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "desired.yaml"
    path.write_text(
        "version: 1\npolicy: {headroom: {reserve_mib: 2048}}\nmodels:\n"
        "  - {name: big, backend: vllm, model: m, port: 8000, vram_mib: 90000, required: true}\n"
    )
    code, out, err = run(["check", str(path), "--profile", "h100-80g"], capsys)
    assert code == 1
    assert out[2].startswith(f"warning: {path}:2:34: policy.headroom.reserve_mib: 2048 MiB")
    assert err.startswith(f"error: {path}:4:5: models[0]: required model big does not fit")
