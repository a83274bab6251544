"""The bundled hardware profiles, and profile errors located like desired-file errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.config.loader import check_hardware, load_desired, load_profile, profile_names
from reconciler.errors import ConfigErrors

ROOT = Path(__file__).resolve().parents[2]

# name -> (GPU names as NVML reports them, total MiB of each, compute capabilities)
EXPECTED = {
    "rtx3060-12g": (["NVIDIA GeForce RTX 3060"], [12288], ["8.6"]),
    "rtx3090": (["NVIDIA GeForce RTX 3090"], [24576], ["8.6"]),
    "rtx4090": (["NVIDIA GeForce RTX 4090"], [24564], ["8.9"]),
    "rtx5090": (["NVIDIA GeForce RTX 5090"], [32607], ["12.0"]),
    "a100-80g": (["NVIDIA A100-SXM4-80GB"], [81920], ["8.0"]),
    "h100-80g": (["NVIDIA H100 80GB HBM3"], [81559], ["9.0"]),
    "2x3090": (["NVIDIA GeForce RTX 3090"] * 2, [24576] * 2, ["8.6"] * 2),
    "4090+3060": (
        ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3060"],
        [24564, 12288],
        ["8.9", "8.6"],
    ),
    "cpu-only": ([], [], []),
}


def test_every_profile_is_bundled() -> None:
    assert set(EXPECTED) <= set(profile_names())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_profile_describes_the_hardware(name: str) -> None:
    profile = load_profile(name)
    gpus = profile.spec.gpus
    assert ([g.name for g in gpus], [g.memory_mib for g in gpus]) == EXPECTED[name][:2]
    assert [g.compute_capability for g in gpus] == EXPECTED[name][2]
    assert profile.spec.host.ram_mib > 0
    assert profile.name == name


def test_desktop_profiles_carry_a_compositor_baseline() -> None:
    gpu = load_profile("rtx4090").spec.gpus[0]
    assert 300 <= gpu.baseline_mib <= 1000
    assert {p.type for p in gpu.baseline} == {"graphics"}


def test_profile_by_path(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(
        "version: 1\ndescription: lab box\nhost: {ram_mib: 1024, cpus: 2}\n"
        "gpus:\n  - {name: Test GPU, memory_mib: 8192, compute_capability: '7.5'}\n"
    )
    assert load_profile(str(path)).spec.gpus[0].memory_mib == 8192


def test_unknown_profile_name_suggests_one() -> None:
    with pytest.raises(ConfigErrors) as info:
        load_profile("rtx4009")
    assert str(info.value).splitlines() == [
        "rtx4009: no such hardware profile (run `reconcile profiles` to list them); "
        'did you mean "rtx4090"?',
        "1 problem in hardware profile rtx4009; fix and run `reconcile check` again.",
    ]


def test_a_name_or_path_too_long_for_the_system_is_one_problem(tmp_path: Path) -> None:
    """`Path.is_file` raises ENAMETOOLONG (it swallows only a few errnos): one line instead."""
    long = "a" * 300
    with pytest.raises(ConfigErrors) as info:
        load_profile(long)
    shown = "a" * 57 + "..."
    assert str(info.value).splitlines() == [
        f"{shown}: is too long for a file name on this system; check the profile's name or path",
        f"1 problem in hardware profile {shown}; fix and run `reconcile check` again.",
    ]
    path = f"{tmp_path}/{long}.yaml"
    with pytest.raises(ConfigErrors) as info:
        load_profile(path)
    assert [e.render() for e in info.value.errors] == [
        f"{path[:57]}...: is too long for a file name on this system; check the profile's "
        "name or path"
    ]


def test_profile_errors_are_located(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "version: 1\ndescription: bad\nhost: {ram_mib: 1024, cpus: 2}\n"
        "gpus:\n  - name: X\n    memory_mib: 24 GB\n    compute_capability: '8.9'\n"
        "    baselin: []\n"
    )
    with pytest.raises(ConfigErrors) as info:
        load_profile(str(path))
    assert str(info.value).splitlines() == [
        f"{path}:6:17: gpus[0].memory_mib: must be a whole number of MiB from 1 to 1048576 "
        '(1 TiB: no GPU has more), got "24 GB"',
        f'{path}:8:5: gpus[0].baselin: unknown key; did you mean "baseline"?',
        f"2 problems in hardware profile {path}; fix and run `reconcile profiles {path}` again.",
    ]


GPU = "  - {name: X, memory_mib: 24564, compute_capability: '8.9'}\n"
BASE = "version: 1\ndescription: lab\nhost: {ram_mib: 1024, cpus: 2}\ngpus:\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + GPU.replace("24564", "-24564"), "5:27: gpus[0].memory_mib: must be a whole number"
         " of MiB from 1 to 1048576 (1 TiB: no GPU has more), got -24564"),
        (BASE + GPU.replace("24564", "9" * 40), "gpus[0].memory_mib: must be a whole number of MiB"
         " from 1 to 1048576 (1 TiB: no GPU has more), got a number of 40 digits"),
        (BASE + GPU.replace("24564", ".nan"), "gpus[0].memory_mib: must be a whole number of MiB"
         " from 1 to 1048576 (1 TiB: no GPU has more), got nan"),
        (BASE + GPU.replace("}", ", baseline: [{name: game, used_mib: -1}]}"),
         "gpus[0].baseline[0].used_mib: must be a whole number of MiB from 0 to 1048576, got -1"),
        (BASE + GPU.replace("}", ", baseline: [{name: game, used_mib: 30000}]}"),
         "gpus[0].baseline: these programs hold 30000 MiB, more than the GPU's 24564 MiB "
         "(memory_mib)"),
        (BASE + GPU.replace("}", ", uuid: GPU-a}") * 2,
         "gpus[1].uuid: GPU 0 has this UUID too; each GPU has its own"),
        (BASE + GPU * 65, "gpus: at most 64 GPUs (no real machine has more); this profile has "
         "65"),
        (BASE + GPU.replace("}", ", baseline: [" + "{name: x, used_mib: 1}, " * 65 + "]}"),
         "gpus[0].baseline: at most 64 programs per GPU (no real machine has more); this profile "
         "has 65"),
        (BASE.replace("cpus: 2", "cpus: 100000") + GPU,
         "host.cpus: must be a number of logical CPUs from 1 to 16384, got 100000"),
        (BASE.replace("ram_mib: 1024", "ram_mib: 0") + GPU,
         "host.ram_mib: must be a whole number of MiB from 1 to 67108864 (64 TiB), got 0"),
    ],
)  # fmt: skip
def test_a_profile_no_machine_has_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    with pytest.raises(ConfigErrors) as info:
        load_profile(str(path))
    (error,) = info.value.errors
    assert message in error.render(), error.render()
    assert "hardware profile" in str(info.value)


def test_a_missing_profiles_folder_is_a_warning_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope"
    monkeypatch.setenv("RECONCILER_PROFILES", str(missing))
    argv = [sys.executable, "-m", "reconciler", "check", str(ROOT / "desired" / "workstation.yaml")]
    done = subprocess.run(
        [*argv, "--profile", "rtx4090", "--profile", "2x3090"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"warning: $RECONCILER_PROFILES names {missing}, which does not exist; no profile is "
        "read from it (set it to folders of profile YAML files, separated by ':')"
    ]
    typo = subprocess.run(
        [*argv, "--profile", "rtx4009"], capture_output=True, text=True, check=False
    )
    assert typo.returncode == 1
    assert typo.stderr.splitlines()[1:] == [
        "rtx4009: no such hardware profile (run `reconcile profiles` to list them); "
        'did you mean "rtx4090"?',
        "1 problem in hardware profile rtx4009; fix and run `reconcile check` again.",
    ]


def test_pins_and_gpus_are_checked_against_the_profile() -> None:
    desired = load_desired(ROOT / "desired" / "dual-gpu.yaml")
    assert check_hardware(desired, load_profile("2x3090")) == []
    problems = [e.render() for e in check_hardware(desired, load_profile("rtx4090"))]
    assert problems == [
        f"{desired.path}:14:11: gpus[1]: no GPU 1 on profile rtx4090, which has GPU 0",
        f"{desired.path}:41:11: models[2].pin[0]: no GPU 1 on profile rtx4090, which has GPU 0",
    ]


def test_a_profile_is_at_most_64_kib(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(BASE + GPU * 2000)
    with pytest.raises(ConfigErrors) as info:
        load_profile(str(path))
    assert [e.render() for e in info.value.errors] == [
        f"{path}: is {path.stat().st_size} bytes; a profile is at most 64 KiB (the bundled ones "
        "are under 1 KiB); is this the right file?"
    ]


def test_a_typo_of_a_user_profile_name_suggests_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lab-box.yaml").write_text(BASE + GPU)
    monkeypatch.setenv("RECONCILER_PROFILES", str(tmp_path))
    assert load_profile("lab-box").spec.gpus[0].memory_mib == 24564
    with pytest.raises(ConfigErrors) as info:
        load_profile("lab-bx")
    assert str(info.value).splitlines()[0] == (
        "lab-bx: no such hardware profile (run `reconcile profiles` to list them); "
        'did you mean "lab-box"?'
    )
