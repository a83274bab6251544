from __future__ import annotations

import pytest

from reconciler.config.desired import Thermal
from reconciler.levels import pressure, thermal_state


@pytest.mark.parametrize(
    ("used", "level"),
    [
        (0, "low"),
        (49, "low"),
        (50, "normal"),
        (69, "normal"),
        (70, "high"),
        (84, "high"),
        (85, "critical"),
        (100, "critical"),
    ],
)
def test_pressure(used: int, level: str) -> None:
    assert pressure(used, 100) == level


def test_pressure_of_a_gpu_without_memory_is_critical() -> None:
    assert pressure(0, 0) == "critical"


def test_pressure_of_figures_no_float_holds() -> None:
    assert (pressure(10**400, 10**401), pressure(10**401, 10**400)) == ("low", "critical")


@pytest.mark.parametrize(
    ("temp", "state"),
    [
        (None, "unknown"),
        (30, "normal"),
        (64, "normal"),
        (65, "warning"),
        (79, "warning"),
        (80, "throttling"),
        (84, "throttling"),
        (85, "critical"),
        (95, "critical"),
    ],
)
def test_thermal_defaults(temp: int | None, state: str) -> None:
    assert thermal_state(temp) == state


def test_thermal_gates_come_from_the_policy() -> None:
    policy = Thermal(shed_above_c=75, evict_above_c=83)
    assert [thermal_state(t, policy) for t in (74, 75, 82, 83)] == [
        "warning",
        "throttling",
        "throttling",
        "critical",
    ]
