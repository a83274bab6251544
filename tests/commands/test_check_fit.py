"""`reconcile check --profile`: the models must fit; CI annotations on the model's line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def too_big(tmp_path: Path) -> Path:
    """The README's example with its required chat model made too large for 12 GB."""
    path = tmp_path / "desired.yaml"
    text = (ROOT / "desired" / "workstation.yaml").read_text()
    text = text.replace(
        "    ctx: 16384\n    parallel: 2\n    cache_type: q8_0\n",
        "    ctx: 131072\n    parallel: 2\n    cache_type: f16\n",
    )
    path.write_text(text)
    shutil.copy(ROOT / "desired" / "workstation.lock.yaml", tmp_path / "desired.lock.yaml")
    return path


def test_the_example_fits_an_rtx4090(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(ROOT / "desired" / "workstation.yaml"), "--profile", "rtx4090"]) == 0
    out = capsys.readouterr().out
    assert "  3 of 3 models fit" in out
    assert "error:" not in out


def test_a_required_model_too_large_fails_with_an_annotation_on_its_line(
    too_big: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = too_big.read_text().splitlines().index("  - name: chat") + 1
    assert main(["check", str(too_big), "--profile", "rtx3060-12g", "--format", "github"]) == 1
    annotations = capsys.readouterr().out.splitlines()
    errors = [a for a in annotations if a.startswith("::error ")]
    assert len(errors) == 1
    assert errors[0].startswith(
        f"::error file={too_big},line={line},col=5::models[0]: required model chat does not fit "
        "on profile rtx3060-12g: needs "
    )
    assert main(["check", str(too_big), "--profile", "rtx4090"]) == 0


def test_text_format_lists_errors_and_exits_1(
    too_big: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report on stdout; the models that do not fit on stderr, after it, with what to do."""
    assert main(["check", str(too_big), "--profile", "rtx3060-12g"]) == 1
    out, err = capsys.readouterr()
    assert "required model chat" not in out
    assert out.splitlines()[-1].startswith("  ")  # the profile's summary line ends the report
    lines = err.splitlines()
    assert lines[0].startswith(
        f"error: {too_big}:16:5: models[0]: required model chat does not fit"
    )
    assert lines[-1] == (
        "1 required model does not fit; each line above says why and what would make it fit; "
        "change the file and run `reconcile check` again."
    )


def test_config_errors_become_annotations_too(capsys: pytest.CaptureFixture[str]) -> None:
    broken = ROOT / "tests" / "config" / "broken" / "ctx-not-a-number.yaml"
    assert main(["check", str(broken), "--format", "github"]) == 1
    assert capsys.readouterr().out.strip() == (
        f'::error file={broken},line=6,col=10::models[0].ctx: must be a positive integer, got "8k"'
    )


def test_the_summary_names_a_model_that_fits_only_as_its_fallback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On a 12 GB card the workstation's coder runs as coder-small: the count says so rather
    than claiming every model fits as written."""
    assert (
        main(["check", str(ROOT / "desired" / "workstation.yaml"), "--profile", "rtx3060-12g"]) == 0
    )
    assert capsys.readouterr().out.splitlines()[-1] == "  3 of 3 models fit (coder as coder-small)"
