"""Pure judgements on a GPU: memory pressure and thermal state."""

from __future__ import annotations

from typing import Literal

from reconciler.config.desired import Thermal

__all__ = ["Pressure", "ThermalState", "pressure", "thermal_state"]

Pressure = Literal["low", "normal", "high", "critical"]
ThermalState = Literal["normal", "warning", "throttling", "critical", "unknown"]

WARNING_C = 65


def pressure(used_mib: int, total_mib: int) -> Pressure:
    """low < 50 % <= normal < 70 % <= high < 85 % <= critical (of total memory). Whole
    numbers throughout: no figure is too large to compare (a float division overflows)."""
    if total_mib <= 0:
        return "critical"
    percent = 100 * max(used_mib, 0)
    if percent < 50 * total_mib:
        return "low"
    if percent < 70 * total_mib:
        return "normal"
    if percent < 85 * total_mib:
        return "high"
    return "critical"


def thermal_state(temperature_c: int | None, policy: Thermal | None = None) -> ThermalState:
    """normal < 65 C <= warning < shed_above_c <= throttling < evict_above_c <= critical."""
    if temperature_c is None:
        return "unknown"
    gates = policy or Thermal()
    if temperature_c >= gates.evict_above_c:
        return "critical"
    if temperature_c >= gates.shed_above_c:
        return "throttling"
    if temperature_c >= WARNING_C:
        return "warning"
    return "normal"
