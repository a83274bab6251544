"""The NVML adapter driven through a fake NVML module that raises pynvml's real errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pynvml
import pytest

from reconciler.observe.observer import Observer
from tests.observe.fake_nvml import MIB, FakeGpu, FakeNvml

ME = os.getpid()


def observe(gpus: list[FakeGpu], init_error: int | None = None):  # type: ignore[no-untyped-def]
    return Observer(FakeNvml(gpus, init_error)).observe()


@pytest.mark.parametrize(
    ("error", "note"),
    [
        (
            pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
            "no NVIDIA GPU: the NVML library (libnvidia-ml) is not installed",
        ),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "no NVIDIA GPU: the NVIDIA driver is not loaded"),
        (
            pynvml.NVML_ERROR_NO_PERMISSION,
            "NVML refused access (no permission); run as a user who may use the GPU",
        ),
    ],
)
def test_no_driver_is_a_normal_state(error: int, note: str) -> None:
    state = observe([], init_error=error)
    assert (state.gpus, state.gpu_note) == ((), note)
    assert state.host.ram_total_mib > 0
    assert state.host.cpus >= 1


def test_no_pynvml_package_is_a_normal_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    state = Observer().observe()
    assert state.gpus == ()
    assert state.gpu_note == "no NVIDIA GPU: the nvidia-ml-py package (pynvml) is not installed"


def test_nvml_starts_once() -> None:
    fake = FakeNvml([FakeGpu()])
    calls = []
    real_init = fake.nvmlInit

    def counting_init() -> None:
        calls.append(1)
        real_init()

    fake.nvmlInit = counting_init  # type: ignore[method-assign]
    observer = Observer(fake)
    for _ in range(3):
        observer.observe()
    assert calls == [1]


def test_one_gpu_every_field() -> None:
    gpu = FakeGpu(compute=[(ME, 2048 * MIB)], events=0x1 | 0x40)
    state = observe([gpu])
    (g,) = state.gpus
    assert (g.index, g.uuid, g.name, g.compute_capability) == (
        0,
        "GPU-00000000-0000-0000-0000-000000000000",
        "NVIDIA GeForce RTX 4090",
        "8.9",
    )
    assert (g.memory_total_mib, g.memory_used_mib, g.memory_reserved_mib) == (24564, 1000, 300)
    assert g.memory_free_mib == 24564 - 1000 - 300
    assert (g.temperature_c, g.power_w, g.power_limit_w, g.utilization_pct) == (45, 80, 450, 5)
    assert g.clock_events == ("idle", "hw-thermal")
    assert (g.mig_mode, g.pci_bus_id, g.lost) == (False, "00000000:01:00.0", False)
    (p,) = g.processes
    assert (p.pid, p.used_mib, p.kind, p.owner) == (ME, 2048, "compute", "foreign")
    assert p.name is not None
    assert state.driver == "580.159.04"


def test_four_gpus_compute_and_graphics_lists() -> None:
    gpus = [
        FakeGpu(uuid=f"GPU-{i}", graphics=[(ME, 400 * MIB)] if i == 0 else []) for i in range(4)
    ]
    state = observe(gpus)
    assert [g.index for g in state.gpus] == [0, 1, 2, 3]
    assert [p.kind for p in state.gpus[0].processes] == ["graphics"]  # a game is a graphics process
    assert state.gpus[0].foreign_mib == 400


def test_a_field_not_supported_is_none_for_that_field_only() -> None:
    gpu = FakeGpu(unsupported={"temperature", "power", "limit", "util", "events", "cc"})
    (g,) = observe([gpu]).gpus
    assert (g.temperature_c, g.power_w, g.power_limit_w, g.utilization_pct) == (None,) * 4
    assert (g.compute_capability, g.clock_events) == (None, ())
    assert g.memory_total_mib == 24564


def test_no_permission_on_a_field_is_none_and_a_note() -> None:
    state = observe([FakeGpu(denied={"processes", "power"}, compute=[(ME, MIB)])])
    (g,) = state.gpus
    assert (g.processes, g.power_w, g.temperature_c) == ((), None, 45)
    why = "(no permission; run as a user who may use the GPU)"
    assert state.notes == (
        f"GPU 0: power draw not read {why}",
        f"GPU 0: the compute process list not read {why}",
        f"GPU 0: the graphics process list not read {why}",
    )


def test_another_nvml_error_on_a_field_is_none_and_a_note() -> None:
    state = observe([FakeGpu(failing={"temperature": pynvml.NVML_ERROR_UNKNOWN})])
    assert state.gpus[0].temperature_c is None
    assert state.notes == ("GPU 0: temperature not read (NVML error: Unknown Error)",)


def test_a_gpu_without_a_handle_is_left_out_with_a_note() -> None:
    gpus = [FakeGpu(uuid="GPU-a", no_handle=pynvml.NVML_ERROR_NO_PERMISSION), FakeGpu(uuid="GPU-b")]
    state = observe(gpus)
    assert [(g.index, g.uuid) for g in state.gpus] == [(1, "GPU-b")]
    assert state.notes == ("GPU 0: cannot be read (Insufficient Permissions); left out",)


def test_notes_are_of_the_latest_observation_only() -> None:
    fake = FakeNvml([FakeGpu(denied={"power"})])
    observer = Observer(fake)
    assert len(observer.observe().notes) == 1
    fake.devices[0].denied = set()
    assert observer.observe().notes == ()


def test_memory_of_a_process_not_reported_is_none() -> None:
    gpu = FakeGpu(compute=[(ME, None)], graphics=[(os.getppid(), (1 << 64) - 1)])
    assert [p.used_mib for p in observe([gpu]).gpus[0].processes] == [None, None]


def test_a_process_in_both_lists_is_listed_once_with_its_larger_figure() -> None:
    gpu = FakeGpu(compute=[(ME, None)], graphics=[(ME, 700 * MIB)])
    (p,) = observe([gpu]).gpus[0].processes
    assert (p.pid, p.used_mib, p.kind) == (ME, 700, "compute")


def test_old_driver_without_v2_memory_info() -> None:
    (g,) = observe([FakeGpu(v2=False)]).gpus
    assert (g.memory_free_mib, g.memory_reserved_mib) == (24564 - 1000, None)


def test_a_process_gone_between_nvml_and_psutil_is_dropped() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (g,) = observe([FakeGpu(compute=[(gone.pid, 100 * MIB), (ME, 200 * MIB)])]).gpus
    assert [p.pid for p in g.processes] == [ME]


def test_mig_devices_are_their_own_entries() -> None:
    parts = [
        FakeGpu(uuid=f"MIG-{i}", total_mib=40192, used_mib=10, compute=[(ME, MIB)] if i else [])
        for i in range(2)
    ]
    state = observe([FakeGpu(name="NVIDIA A100-SXM4-80GB", total_mib=81920, mig=parts)])
    assert [(g.label, g.uuid, g.memory_total_mib) for g in state.gpus] == [
        ("0", "GPU-00000000-0000-0000-0000-000000000000", 81920),
        ("0/mig0", "MIG-0", 40192),
        ("0/mig1", "MIG-1", 40192),
    ]
    assert state.gpus[0].mig_mode is True
    assert [len(g.processes) for g in state.gpus] == [0, 0, 1]
    assert state.notes == ()  # the empty MIG slots (NotFound) are no news


def test_mig_parent_that_may_not_be_asked_for_its_totals() -> None:
    # Aggregate queries on a MIG parent need privileges: the parent's memory is unknown (0, so
    # nothing is placed on it), its MIG devices are read through their own handles.
    parts = [FakeGpu(uuid="MIG-0", total_mib=40192, used_mib=10)]
    parent = FakeGpu(total_mib=81920, mig=parts, denied={"memory", "processes"})
    state = observe([parent])
    assert [(g.label, g.memory_total_mib, g.memory_free_mib) for g in state.gpus] == [
        ("0", 0, 0),
        ("0/mig0", 40192, 40192 - 10 - 300),
    ]
    assert "GPU 0: memory use not read (no permission; run as a user who may use the GPU)" in (
        state.notes
    )


def test_a_lost_gpu_is_marked_and_the_others_observed() -> None:
    fake = FakeNvml([FakeGpu(uuid="GPU-a"), FakeGpu(uuid="GPU-b")])
    observer = Observer(fake)
    assert [g.lost for g in observer.observe().gpus] == [False, False]
    fake.devices[0].lost = True
    first, second = observer.observe().gpus
    assert (first.lost, first.uuid, first.memory_total_mib) == (True, "GPU-a", 0)
    assert (first.pci_bus_id, first.processes) == ("00000000:01:00.0", ())
    assert (second.lost, second.memory_total_mib) == (False, 24564)


def test_a_gpu_lost_midway_through_its_fields() -> None:
    fake = FakeNvml([FakeGpu(uuid="GPU-a"), FakeGpu(uuid="GPU-b")])
    fake.devices[0].failing = {"power": pynvml.NVML_ERROR_GPU_IS_LOST}
    first, second = Observer(fake).observe().gpus
    assert (first.lost, first.uuid) == (True, "GPU-a")  # static facts read before the loss
    assert second.lost is False


def test_static_facts_are_read_once() -> None:
    fake = FakeNvml([FakeGpu()])
    observer = Observer(fake)
    observer.observe()
    first = fake.calls
    observer.observe()
    assert fake.calls - first < first  # name, uuid, bus id, capability, limit not asked again


@pytest.mark.gpu
def test_real_nvml() -> None:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pytest.skip("NVML cannot initialise here (no NVIDIA driver or GPU)")
    observer = Observer()
    state = observer.observe()
    assert state.gpus, state.gpu_note
    assert (state.source, state.gpu_note) == ("nvml", None)
    assert state.driver
    for g in state.gpus:
        assert g.uuid.startswith(("GPU-", "MIG-"))
        if g.lost or g.memory_total_mib == 0:
            continue
        assert 0 <= g.memory_used_mib <= g.memory_total_mib
        assert g.memory_free_mib <= g.memory_total_mib
        if g.mig is None:
            assert g.compute_capability is not None
            assert g.pci_bus_id
        for p in g.processes:
            assert p.pid > 0
            assert p.used_mib is None or p.used_mib >= 0
    again = observer.observe()  # static facts come from the cache
    assert [g.uuid for g in again.gpus] == [g.uuid for g in state.gpus]
