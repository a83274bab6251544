"""Snapshots and profiles as observed states."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.config.loader import load_profile
from reconciler.config.yamlfile import dump_yaml
from reconciler.errors import ConfigErrors
from reconciler.observe.observer import Observer
from reconciler.observe.snapshot import from_profile, load_snapshot
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


def test_snapshot_reads_back_equal_with_its_fingerprint(tmp_path: Path) -> None:
    state = Observer(FakeNvml([FakeGpu(compute=[(os.getpid(), 512 * MIB)])])).observe()
    path = tmp_path / "observed.json"
    path.write_text(state.to_json())
    assert load_snapshot(path) == state
    assert load_snapshot(path).fingerprint() == state.fingerprint()


def test_a_snapshot_keeps_dollar_braces_as_written(tmp_path: Path) -> None:
    state = from_profile(load_profile("rtx4090").spec, "rtx4090")
    gpu = state.gpus[0]
    odd = ("sh", "-c", "echo ${env.HOME} $${x} ${PWD} $$${y}")
    proc = gpu.processes[0].model_copy(update={"cmdline": odd, "name": "${env.USER}"})
    state = state.model_copy(update={"gpus": (gpu.model_copy(update={"processes": (proc,)}),)})
    path = tmp_path / "observed.json"
    path.write_text(state.to_json())
    assert load_snapshot(path) == state
    yaml_path = tmp_path / "observed.yaml"
    yaml_path.write_text(dump_yaml(json.loads(state.to_json())))
    assert load_snapshot(yaml_path) == state


def test_a_yaml_snapshot_written_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "busy.yaml"
    path.write_text(
        "source: snapshot\n"
        "host: {ram_total_mib: 65536, ram_available_mib: 40000, cpus: 16}\n"
        "gpus:\n"
        "  - index: 0\n"
        "    uuid: GPU-x\n"
        "    name: NVIDIA GeForce RTX 3090\n"
        "    memory_total_mib: 24576\n"
        "    memory_used_mib: 10500\n"
        "    memory_free_mib: 14076\n"
        "    processes:\n"
        "      - {pid: 4242, used_mib: 10240, kind: graphics, name: game.exe}\n"
    )
    state = load_snapshot(path)
    (gpu,) = state.gpus
    assert (state.source, gpu.foreign_mib, gpu.processes[0].owner) == ("snapshot", 10240, "foreign")


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


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{\n  "source": "nvml",\n  "host": {"cpus": 1,, }\n}\n', "3:22: JSON syntax error: "),
        ('{\n  "source": "nvml"\n  "host": {}\n}', "3:3: JSON syntax error: Expecting ','"),
        ("source: nvml\nhost: [\n", "YAML syntax error"),
        ("", "1:1: the snapshot is empty"),
        (
            '{"source": "nvml", "host": {"ram_total_mib": 1, "ram_available_mib": 1, '
            '"cpus": 1}, "gpu": []}',
            '1:85: gpu: unknown key; did you mean "gpus"?',
        ),
    ],
)
def test_broken_snapshots_are_located(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "s.json"
    path.write_text(text)
    with pytest.raises(ConfigErrors) as info:
        load_snapshot(path)
    (first,) = info.value.errors
    assert first.render().startswith(f"{path}:"), first.render()
    assert error in first.render()


def test_a_missing_snapshot_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as info:
        load_snapshot(tmp_path / "nope.json")
    assert (
        info.value.errors[0].render() == f"{tmp_path / 'nope.json'}: no such file; check the path"
    )


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


IMPOSSIBLE = json.loads((Path(__file__).parent / "impossible_snapshots.json").read_text())


def _base() -> dict[str, Any]:
    """The rtx4090 profile as a snapshot, 10840 MiB in use."""
    data: dict[str, Any] = json.loads(
        from_profile(load_profile("rtx4090").spec, "rtx4090").to_json()
    )
    data["gpus"][0].update(uuid="GPU-test-0", memory_used_mib=10840, memory_free_mib=13724)
    return data


def _at(data: Any, dotted: str) -> tuple[Any, str | int]:
    *parents, last = [int(p) if p.isdigit() else p for p in dotted.split(".")]
    for part in parents:
        data = data[part]
    return data, last


@pytest.mark.parametrize("case", IMPOSSIBLE, ids=[c["case"] for c in IMPOSSIBLE])
def test_a_snapshot_no_machine_can_produce_is_refused(tmp_path: Path, case: dict[str, Any]) -> None:
    data = _base()
    for key, source in case.get("append", {}).items():
        parent, last = _at(data, source)
        data[key].append(copy.deepcopy(parent[last]))
    for dotted, value in case.get("set", {}).items():
        parent, last = _at(data, dotted)
        parent[last] = value
    path = tmp_path / "now.json"
    path.write_text(json.dumps(data, indent=2))
    with pytest.raises(ConfigErrors) as info:
        load_snapshot(path)
    assert [e.render().split(": ", 1)[1] for e in info.value.errors] == case["errors"]
    assert all(e.render().startswith(f"{path}:") for e in info.value.errors)
    assert (
        str(info.value)
        .splitlines()[-1]
        .endswith(f"in snapshot {path}; fix and run `reconcile status --observed {path}` again.")
    )


def test_the_base_of_the_impossible_cases_is_possible(tmp_path: Path) -> None:
    path = tmp_path / "now.json"
    path.write_text(json.dumps(_base()))
    assert load_snapshot(path).gpus[0].memory_used_mib == 10840


def _text_of(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2)


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (lambda t: t.replace('"power_w": null', '"power_w": NaN'),
         'gpus[0].power_w: NaN is not JSON; write null where a value is unknown'),
        (lambda t: t.replace('"power_w": null', '"power_w": -Infinity'),
         'gpus[0].power_w: -Infinity is not JSON; write null where a value is unknown'),
        (lambda t: t.replace('"power_w": null', '"power_w": 1e999'),
         "gpus[0].power_w: 1e999 is too large a number for any value in a snapshot"),
        (lambda t: t.replace("10840", "9" * 5000),
         "gpus[0].memory_used_mib: a number of 5000 digits; no value in a snapshot has more than "
         "20"),
        (lambda t: t.replace('"notes": []', '"notes": ' + "[" * 5000 + "]" * 5000),
         "nested deeper than 32 levels; a snapshot has 5"),
    ],
)  # fmt: skip
def test_json_no_reader_agrees_on_is_refused(
    tmp_path: Path, edit: Callable[[str], str], error: str
) -> None:
    path = tmp_path / "now.json"
    path.write_text(edit(_text_of(_base())))
    with pytest.raises(ConfigErrors) as info:
        load_snapshot(path)
    (first,) = info.value.errors
    assert first.render().split(": ", 1)[1] == error
    assert first.line > 1


def test_at_most_512_gpus_and_mig_slices(tmp_path: Path) -> None:
    data = _base()
    gpu = data["gpus"][0]
    data["gpus"] = [{**gpu, "index": i, "uuid": f"GPU-{i}"} for i in range(3000)]
    path = tmp_path / "now.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigErrors) as info:
        load_snapshot(path)
    assert [e.render() for e in info.value.errors] == [
        f"{path}:1:126: gpus: at most 512 GPUs and MIG slices (64 GPUs of 7 slices each: no real "
        "machine has more); this snapshot has 3000"
    ]


def test_at_most_1024_processes_per_gpu(tmp_path: Path) -> None:
    data = _base()
    proc = data["gpus"][0]["processes"][0]
    data["gpus"][0]["processes"] = [{**proc, "pid": 10 + i, "used_mib": 0} for i in range(2000)]
    path = tmp_path / "now.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigErrors) as info:
        load_snapshot(path)
    assert [e.render().split(": ", 1)[1] for e in info.value.errors] == [
        "gpus[0].processes: at most 1024 processes per GPU; this one lists 2000"
    ]


def test_a_yaml_snapshot_is_at_most_256_kib(tmp_path: Path) -> None:
    path = tmp_path / "now.yaml"
    path.write_text("# written by hand\n" + json.dumps(_base(), indent=2) + " " * 300_000)
    with pytest.raises(ConfigErrors) as info:
        load_snapshot(path)
    assert [e.render() for e in info.value.errors] == [
        f"{path}: a snapshot written as YAML is at most 256 KiB (this one has 294 KiB); write "
        "it as JSON, as `reconcile status --json` does"
    ]


@pytest.mark.parametrize(
    ("dotted", "value", "error"),
    [
        ("gpus.0.name", "RTX \udcff", "gpus[0].name: not valid Unicode (a lone surrogate)"),
        ("driver", "\ud800", "driver: not valid Unicode (a lone surrogate)"),
        ("gpus.0.name", "RTX\x1b[2J", "gpus[0].name: a control character (U+001B) where text is "
         "expected"),
        ("gpu_note", "a\x00b", "gpu_note: a control character (U+0000) where text is expected"),
        ("gpus.0.processes.0.name", "X\x9b", "gpus[0].processes[0].name: a control character "
         "(U+009B) where text is expected"),
        ("notes", ["x" * 5000], "notes[0]: at most 4096 characters; this text has 5000"),
        ("notes", [1] * 300, "notes: at most 256 notes; this snapshot has 300"),
        ("gpus.0.processes.0.env", {"\udcff": "x"},
         "gpus[0].processes[0].env: a key '\\udcff': not valid Unicode (a lone surrogate)"),
    ],
)  # fmt: skip
def test_text_no_terminal_can_show_is_refused(
    tmp_path: Path, dotted: str, value: Any, error: str
) -> None:
    data = _base()
    parent, last = _at(data, dotted)
    parent[last] = value
    path = tmp_path / "now.json"
    path.write_text(json.dumps(data, indent=2))
    with pytest.raises(ConfigErrors) as info:
        load_snapshot(path)
    assert [e.render().split(": ", 1)[1] for e in info.value.errors] == [error]
    assert info.value.errors[0].line > 1


def test_tab_and_newline_are_text(tmp_path: Path) -> None:
    data = _base()
    data["notes"] = ["one\ttwo\nthree"]
    path = tmp_path / "now.json"
    path.write_text(json.dumps(data))
    assert load_snapshot(path).notes == ("one\ttwo\nthree",)


def test_at_most_50_validation_problems_are_shown(tmp_path: Path) -> None:
    data = _base()
    data["gpus"] = [1] * 200_000
    path = tmp_path / "now.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigErrors) as info:
        load_snapshot(path)
    lines = [e.render() for e in info.value.errors]
    assert len(lines) == 51
    assert [line.split(": ", 1)[1] for line in lines] == [
        *(f"gpus[{i}]: must be a mapping of keys, got 1" for i in range(50)),
        "gpus[50]: ... and 199950 more problems from here on",
    ]


def test_a_gone_instance_may_share_its_pid_with_a_running_one(tmp_path: Path) -> None:
    """The journal's old entry whose pid the kernel gave to a later process (as observed)."""
    data = _base()
    running = {"model": "chat", "pid": 4242, "start_time": 1700000000.0, "gpus": ["0"]}
    gone = {**running, "model": "old", "state": "gone", "start_time": 1600000000.0, "gpus": []}
    data["instances"] = [running, gone]
    path = tmp_path / "now.json"
    path.write_text(json.dumps(data))
    assert [i.model for i in load_snapshot(path).instances] == ["chat", "old"]
