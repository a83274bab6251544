"""The one base of every value the reconciler passes between stages: frozen, unknown keys
refused, no NaN or infinity (they would leak into arithmetic)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Frozen"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
