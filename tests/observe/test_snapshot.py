"""Snapshots and profiles as observed states; `reconcile status` in both forms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.errors import ConfigErrors
from reconciler.observe.observer import Observer
from reconciler.observe.snapshot import from_profile, load_snapshot
from reconciler.spec.loader import load_profile
from tests.observe.fake_nvml import MIB, FakeGpu, FakeNvml


def test_profile_becomes_an_idle_machine_with_its_baseline() -> None:
    state = from_profile(load_profile("4090+3060").spec, "4090+3060")
    assert state.source == "profile:4090+3060"
    big, small = state.gpus
    assert (big.memory_total_mib, big.memory_used_mib, big.processes) == (24564, 0, ())
    assert small.memory_used_mib == 560
    assert [(p.name, p.kind, p.owner) for p in small.processes] == [
        ("Xorg", "graphics", "foreign"),
        ("gnome-shell", "graphics", "foreign"),
        ("firefox", "graphics", "foreign"),
    ]
    assert state.instances == ()


def test_cpu_only_profile_says_so() -> None:
    state = from_profile(load_profile("cpu-only").spec, "cpu-only")
    assert (state.gpus, state.gpu_note) == ((), "no NVIDIA GPU in profile cpu-only")


def test_status_json_round_trips_through_observed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    state = Observer(FakeNvml([FakeGpu(compute=[(os.getpid(), 512 * MIB)])])).observe()
    first = tmp_path / "observed.json"
    first.write_text(state.to_json())
    assert main(["status", "--observed", str(first), "--json"]) == 0
    again = capsys.readouterr().out
    assert json.loads(again) == json.loads(first.read_text())
    assert load_snapshot(first) == state
    assert load_snapshot(first).fingerprint() == state.fingerprint()


def test_fingerprint_ignores_heat_and_load_but_not_programs() -> None:
    state = from_profile(load_profile("rtx4090").spec, "rtx4090")
    gpu = state.gpus[0]
    warmer = state.model_copy(
        update={
            "gpus": (gpu.model_copy(update={"temperature_c": 70, "utilization_pct": 99}),),
            "observed_at": "2026-11-22T12:00:00+00:00",
        }
    )
    assert warmer.fingerprint() == state.fingerprint()
    game = gpu.processes[0].model_copy(update={"pid": 4242, "name": "game", "used_mib": 10240})
    with_game = state.model_copy(
        update={"gpus": (gpu.model_copy(update={"processes": (*gpu.processes, game)}),)}
    )
    assert with_game.fingerprint() != state.fingerprint()


def test_a_broken_snapshot_is_located(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(
        '{\n  "source": "nvml",\n'
        '  "host": {"ram_total_mib": "lots", "ram_available_mib": 1, "cpus": 1}\n}\n'
    )
    with pytest.raises(ConfigErrors) as info:
        load_snapshot(path)
    assert [e.render() for e in info.value.errors] == [
        f'{path}:3:29: host.ram_total_mib: must be an integer, got "lots"'
    ]


def test_status_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--profile", "rtx3060-12g"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "source: profile:rtx3060-12g"
    assert lines[1].startswith("GPU 0  NVIDIA GeForce RTX 3060  [#")
    assert "560/12288 MiB (low)" in lines[1]
    assert lines[2].split() == ["1000000", "graphics", "310", "MiB", "Xorg", "[foreign]"]
    assert lines[-1] == "instances: none started by the reconciler"


def test_status_without_a_gpu_says_so_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--profile", "cpu-only"]) == 0
    assert capsys.readouterr().out.splitlines()[1:3] == [
        "no NVIDIA GPU in profile cpu-only",
        "host: 32768/32768 MiB RAM available, 8 CPUs",
    ]
