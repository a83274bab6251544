"""The example desired files (not their lock files)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def desired_examples() -> list[Path]:
    return sorted(p for p in (ROOT / "desired").glob("*.yaml") if not p.name.endswith(".lock.yaml"))
