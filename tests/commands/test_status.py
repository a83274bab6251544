"""`reconcile status`, called as the CLI calls it: the table, `--json`, and reading it back."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path

import psutil
import pynvml
import pytest

from reconciler.commands.status import PROCESS_HEADER, status
from reconciler.errors import ConfigErrors
from reconciler.observe import observe
from reconciler.observe.journal import JournalEntry
from reconciler.observe.observer import Observer
from reconciler.observe.snapshot import load_snapshot
from reconciler.state import ObservedState
from tests.observe.fake_nvml import MIB, FakeGpu, FakeNvml


def run(
    *, json_out: bool = False, observed: str | Path | None = None, profile: str | None = None
) -> tuple[int, str]:
    args = argparse.Namespace(
        json=json_out, observed=None if observed is None else str(observed), profile=profile
    )
    out = io.StringIO()
    code = status(args, out)
    return code, out.getvalue()


def busy_machine() -> ObservedState:
    """An observation through the fake NVML: ours and foreign, MIG, a lost GPU, a note."""
    me = os.getpid()
    mig = [
        FakeGpu(
            name="NVIDIA A100-SXM4-80GB MIG 3g.40gb",
            uuid="MIG-0",
            total_mib=40192,
            used_mib=5000,
            compute=[(me, 4096 * MIB)],
        )
    ]
    gpus = [
        FakeGpu(compute=[(me, 2048 * MIB)], graphics=[(os.getppid(), None)], events=0x1 | 0x40),
        FakeGpu(uuid="GPU-a100", name="NVIDIA A100-SXM4-80GB", total_mib=81920, mig=mig),
        FakeGpu(uuid="GPU-gone"),
        FakeGpu(uuid="GPU-quiet", denied={"power"}, temperature=82),
    ]
    fake = FakeNvml(gpus)
    observer = Observer(fake)
    observer.observe()  # the static facts, before GPU 2 is lost
    fake.devices[2].lost = True
    return observer.observe()


def test_json_round_trips_through_observed_unchanged(tmp_path: Path) -> None:
    state = busy_machine()
    first = tmp_path / "first.json"
    first.write_text(state.to_json() + "\n")
    code, printed = run(json_out=True, observed=first)
    assert (code, printed) == (0, first.read_text())
    second = tmp_path / "second.json"
    second.write_text(printed)
    assert run(json_out=True, observed=second) == (0, printed)
    assert load_snapshot(second) == state
    assert load_snapshot(second).fingerprint() == state.fingerprint()


def test_json_is_the_snapshot_format(tmp_path: Path) -> None:
    _, printed = run(json_out=True, profile="rtx3060-12g")
    data = json.loads(printed)
    assert data["source"] == "profile:rtx3060-12g"
    assert ObservedState.model_validate(data).gpus[0].memory_used_mib == 560
    assert "NaN" not in printed
    assert "N/A" not in printed


def test_table(tmp_path: Path) -> None:
    path = tmp_path / "busy.json"
    path.write_text(busy_machine().to_json())
    code, printed = run(observed=path)
    lines = printed.splitlines()
    assert code == 0
    taken = f"source: snapshot {path} (taken from nvml, driver 580.159.04, observed "
    assert lines[0].startswith(taken)
    assert lines[1] == (
        "GPU 0  NVIDIA GeForce RTX 4090  memory [#...................] 1000/24564 MiB used "
        "(pressure low)  temperature 45 C (normal)  power 80/450 W  utilization 5%  "
        "clocks: idle,hw-thermal"
    )
    assert lines[2] == "         PID  KIND           MEMORY  PROGRAM (USER)  [OWNER]"
    me = psutil.Process()
    assert lines[3].split()[1:] == [
        "compute",
        "2048",
        "MiB",
        me.name(),
        f"({me.username()})",
        "[foreign]",
    ]
    assert lines[4].split()[1:4] == ["graphics", "?", "MiB"]
    assert lines[5].startswith("GPU 1  NVIDIA A100-SXM4-80GB  memory [....")
    assert lines[6].startswith("GPU 1/mig0  NVIDIA A100-SXM4-80GB MIG 3g.40gb  memory [##....")
    assert "5000/40192 MiB used (pressure low)" in lines[6]
    assert lines[7] == PROCESS_HEADER
    assert lines[8].split()[1:4] == ["compute", "4096", "MiB"]
    assert (
        lines[9]
        == "GPU 2  NVIDIA GeForce RTX 4090  LOST: the GPU fell off the bus; check `dmesg`, reboot"
    )
    assert "temperature 82 C (throttling)  power -/450 W" in lines[10]
    assert lines[11] == (
        "note: GPU 3: power draw not read (no permission; run as a user who may use the GPU)"
    )
    assert lines[12].startswith("host: ")
    assert lines[13] == "instances: none started by the reconciler"


def test_each_source_says_what_it_read(tmp_path: Path) -> None:
    assert run(profile="rtx4090")[1].splitlines()[0] == "source: profile:rtx4090"
    path = tmp_path / "now.json"
    path.write_text(run(json_out=True, profile="rtx4090")[1])
    assert run(observed=path)[1].splitlines()[0] == (
        f"source: snapshot {path} (taken from profile:rtx4090)"
    )
    state = busy_machine().model_copy(update={"observed_at": "2026-11-24T11:00:00+00:00"})
    path.write_text(state.to_json())
    assert run(observed=path)[1].splitlines()[0] == (
        f"source: snapshot {path} (taken from nvml, driver 580.159.04, observed "
        "2026-11-24T11:00:00+00:00)"
    )


def test_table_marks_ours_and_lists_instances(tmp_path: Path) -> None:
    me = os.getpid()
    start = psutil.Process(me).create_time()
    journal = [
        JournalEntry(model="chat", pid=me, start_time=start, unit="reconciler-chat"),
        JournalEntry(model="old", pid=me, start_time=start - 100),
    ]
    gpus = [FakeGpu(compute=[(me, 3000 * MIB)])]
    state = Observer(FakeNvml(gpus)).observe(journal)
    path = tmp_path / "ours.json"
    path.write_text(state.to_json())
    lines = run(observed=path)[1].splitlines()
    assert lines[3].split()[1:4] == ["compute", "3000", "MiB"]
    assert lines[3].endswith("[ours: chat]")
    assert lines[-3] == "instances:"
    assert lines[-2].startswith(f"    chat  pid {me}  running  up ")
    assert lines[-2].endswith("  GPU 0  3000 MiB  (journal)")
    assert lines[-1] == f"    old  pid {me}  gone  no GPU memory  0 MiB  (journal)"


def test_profile_table() -> None:
    code, printed = run(profile="rtx3060-12g")
    lines = printed.splitlines()
    assert code == 0
    assert lines[0] == "source: profile:rtx3060-12g"
    assert lines[1].startswith("GPU 0  NVIDIA GeForce RTX 3060  memory [#")
    assert "560/12288 MiB used (pressure low)" in lines[1]
    assert lines[2] == PROCESS_HEADER
    assert lines[3].split() == ["1000000", "graphics", "310", "MiB", "Xorg", "[foreign]"]
    assert lines[-1] == "instances: none started by the reconciler"


def test_without_a_gpu_one_line_then_the_host() -> None:
    assert run(profile="cpu-only")[1].splitlines()[1:3] == [
        "no NVIDIA GPU in profile cpu-only",
        "host: 32768/32768 MiB RAM available, 8 CPUs",
    ]


def test_the_real_machine_without_nvml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # as where nvidia-ml-py is missing
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))  # no journal yet
    code, printed = run()
    lines = printed.splitlines()
    assert code == 0
    assert lines[:2] == [
        "source: nvml",
        "no NVIDIA GPU: the nvidia-ml-py package (pynvml) is not installed",
    ]
    assert lines[2].startswith("host: ")
    assert lines[3] == "instances: none started by the reconciler"
    state = ObservedState.model_validate_json(run(json_out=True)[1])
    assert (state.gpus, state.host.cpus > 0) == ((), True)


def test_observed_file_wins_over_profile_wins_over_nvml(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(busy_machine().to_json())
    assert observe(observed=str(path), profile="rtx4090").source == "nvml"
    assert observe(profile="rtx4090").source == "profile:rtx4090"
    assert observe(state_dir=tmp_path).source == "nvml"


def test_a_broken_snapshot_is_an_error_not_output(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"source": "nvml",\n "host": }')
    out = io.StringIO()
    args = argparse.Namespace(json=False, observed=str(path), profile=None)
    with pytest.raises(ConfigErrors) as info:
        status(args, out)
    assert out.getvalue() == ""
    assert info.value.errors[0].render() == (f"{path}:2:10: JSON syntax error: Expecting value")


@pytest.mark.gpu
def test_status_on_the_real_gpu() -> None:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pytest.skip("NVML cannot initialise here (no NVIDIA driver or GPU)")
    code, printed = run()
    assert code == 0
    assert printed.splitlines()[1].startswith("GPU 0  ")
    state = ObservedState.model_validate_json(run(json_out=True)[1])
    assert state.gpus
