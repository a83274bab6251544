"""`reconcile profiles`: the bundled and user profiles with their GPUs, text and JSON."""

from __future__ import annotations

import argparse
import io
import json
import shutil
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.commands.profiles import profiles_command
from reconciler.config.loader import bundled_profiles
from reconciler.errors import ConfigErrors

BUNDLED = bundled_profiles()
NAMES = ["2x3090", "4090+3060", "a100-80g", "cpu-only", "h100-80g", "rtx3060-12g", "rtx3090"]
NAMES += ["rtx4090", "rtx5090"]
BROKEN = "version: 1\ndescription: lab\nhost: {ram_mib: 1024, cpus: 2}\ngpus:\n  - name: X\n"


def run(*refs: str, as_json: bool = False) -> str:
    out = io.StringIO()
    assert profiles_command(argparse.Namespace(profiles=list(refs), json=as_json), out) == 0
    return out.getvalue()


@pytest.fixture(autouse=True)
def _no_user_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECONCILER_PROFILES", raising=False)


def test_every_bundled_profile_with_its_gpus() -> None:
    lines = run().splitlines()
    assert [line.split()[0] for line in lines if not line.startswith(" ")] == NAMES
    at = lines.index("rtx4090  (bundled)  workstation, RTX 4090 24 GB driving the display")
    assert (
        lines[at + 1] == "    GPU 0  NVIDIA GeForce RTX 4090  24564 MiB total  (baseline 600 MiB)"
    )
    at = lines.index("4090+3060  (bundled)  workstation, RTX 4090 24 GB headless + RTX 3060 12 GB "
                     "driving the display")  # fmt: skip
    assert lines[at + 1 : at + 3] == [
        "    GPU 0  NVIDIA GeForce RTX 4090  24564 MiB total",
        "    GPU 1  NVIDIA GeForce RTX 3060  12288 MiB total  (baseline 560 MiB)",
    ]
    assert lines[lines.index("cpu-only  (bundled)  laptop without an NVIDIA GPU") + 1] == (
        "    no NVIDIA GPU"
    )


def test_json_for_scripts() -> None:
    listed = json.loads(run(as_json=True))
    assert [p["name"] for p in listed] == NAMES
    dual = listed[NAMES.index("2x3090")]
    assert (dual["origin"], dual["path"], dual["hides"]) == (
        "bundled",
        str(BUNDLED / "2x3090.yaml"),
        None,
    )
    assert [(g["index"], g["name"], g["memory_mib"]) for g in dual["gpus"]] == [
        (0, "NVIDIA GeForce RTX 3090", 24576),
        (1, "NVIDIA GeForce RTX 3090", 24576),
    ]
    assert dual["host"] == {"ram_mib": 131072, "cpus": 24}


def test_user_profiles_come_first_and_hide_bundled_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(BUNDLED / "rtx4090.yaml", tmp_path / "rtx4090.yaml")
    shutil.copy(BUNDLED / "a100-80g.yaml", tmp_path / "lab.yaml")
    monkeypatch.setenv("RECONCILER_PROFILES", str(tmp_path))
    listed = json.loads(run(as_json=True))
    assert [(p["name"], p["origin"]) for p in listed[:2]] == [
        ("lab", "RECONCILER_PROFILES"),
        ("rtx4090", "RECONCILER_PROFILES"),
    ]
    assert listed[1]["hides"] == str(BUNDLED / "rtx4090.yaml")
    assert [p["name"] for p in listed].count("rtx4090") == 1
    assert (
        run().splitlines()[0] == f"lab  ({tmp_path / 'lab.yaml'})  headless server, A100 80 GB SXM4"
    )


def test_a_broken_user_profile_fails_after_the_others_are_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lab.yaml").write_text(BROKEN)
    monkeypatch.setenv("RECONCILER_PROFILES", str(tmp_path))
    out = io.StringIO()
    with pytest.raises(ConfigErrors) as info:
        profiles_command(argparse.Namespace(profiles=[], json=False), out)
    assert out.getvalue().splitlines()[0].startswith("2x3090  (bundled)")
    path = tmp_path / "lab.yaml"
    assert str(info.value).splitlines() == [
        f'{path}:5:5: gpus[0]: missing required key "memory_mib"',
        f'{path}:5:5: gpus[0]: missing required key "compute_capability"',
        f"2 problems in hardware profile {path}; fix and run `reconcile profiles` again.",
    ]


def test_named_profiles_only_and_the_command_to_rerun(tmp_path: Path) -> None:
    assert run("rtx3090").splitlines() == [
        "rtx3090  (bundled)  workstation, RTX 3090 24 GB driving the display",
        "    GPU 0  NVIDIA GeForce RTX 3090  24576 MiB total  (baseline 620 MiB)",
    ]
    path = tmp_path / "my lab.yaml"
    path.write_text(BROKEN)
    with pytest.raises(ConfigErrors) as info:
        run("rtx3090", str(path), "rtx4009")
    assert str(info.value).splitlines()[-2:] == [
        "rtx4009: no such hardware profile (run `reconcile profiles` to list them); "
        'did you mean "rtx4090"?',
        f"3 problems in hardware profile {path}, rtx4009; fix and run "
        f"`reconcile profiles rtx3090 '{path}' rtx4009` again.",
    ]


def test_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles", "rtx4090", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["gpus"][0]["memory_mib"] == 24564
    assert main(["profiles", "rtx4009"]) == 1
    assert "did you mean" in capsys.readouterr().err
