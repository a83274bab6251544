"""The NVML adapter driven through a fake NVML module that raises pynvml's real errors."""

from __future__ import annotations

import os

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


def test_no_permission_on_a_field() -> None:
    (g,) = observe([FakeGpu(denied={"processes", "power"})]).gpus
    assert (g.processes, g.power_w) == ((), None)


def test_memory_of_a_process_not_reported_is_none() -> None:
    gpu = FakeGpu(compute=[(ME, None), (ME, (1 << 64) - 1)])
    assert [p.used_mib for p in observe([gpu]).gpus[0].processes] == [None, None]


def test_old_driver_without_v2_memory_info() -> None:
    (g,) = observe([FakeGpu(v2=False)]).gpus
    assert (g.memory_free_mib, g.memory_reserved_mib) == (24564 - 1000, None)


def test_a_process_gone_between_nvml_and_psutil_is_dropped() -> None:
    import subprocess
    import sys

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


def test_a_lost_gpu_is_marked_and_the_others_observed() -> None:
    fake = FakeNvml([FakeGpu(uuid="GPU-a"), FakeGpu(uuid="GPU-b")])
    observer = Observer(fake)
    assert [g.lost for g in observer.observe().gpus] == [False, False]
    fake.devices[0].lost = True
    first, second = observer.observe().gpus
    assert (first.lost, first.uuid, first.memory_total_mib) == (True, "GPU-a", 0)
    assert (second.lost, second.memory_total_mib) == (False, 24564)


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
        pytest.skip("no NVIDIA driver here")
    state = Observer().observe()
    assert state.gpus
    assert all(g.memory_total_mib > 0 and g.uuid.startswith(("GPU-", "MIG-")) for g in state.gpus)
