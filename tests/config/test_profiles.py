"""The bundled hardware profiles, and profile errors located like desired-file errors."""

from __future__ import annotations

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
        load_profile("rtx409")
    assert (
        info.value.errors[0].render() == 'rtx409: no such hardware profile; did you mean "rtx4090"?'
    )


def test_profile_errors_are_located(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "version: 1\ndescription: bad\nhost: {ram_mib: 1024, cpus: 2}\n"
        "gpus:\n  - name: X\n    memory_mib: 24 GB\n    compute_capability: '8.9'\n"
        "    baselin: []\n"
    )
    with pytest.raises(ConfigErrors) as info:
        load_profile(str(path))
    assert [e.render() for e in info.value.errors] == [
        f'{path}:6:17: gpus[0].memory_mib: must be a positive integer, got "24 GB"',
        f'{path}:8:5: gpus[0].baselin: unknown key; did you mean "baseline"?',
    ]


def test_pins_and_gpus_are_checked_against_the_profile() -> None:
    desired = load_desired(ROOT / "desired" / "dual-gpu.yaml")
    assert check_hardware(desired, load_profile("2x3090")) == []
    problems = [e.render() for e in check_hardware(desired, load_profile("rtx4090"))]
    assert problems == [
        f"{desired.path}:14:11: gpus[1]: no GPU 1 on profile rtx4090, which has GPU 0",
        f"{desired.path}:41:11: models[2].pin[0]: no GPU 1 on profile rtx4090, which has GPU 0",
    ]
