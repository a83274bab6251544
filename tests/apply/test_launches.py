"""Every launch of a plan rendered: the one the applier starts from, strict about programs."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.apply.launches import render_plan
from reconciler.errors import ApplyError
from reconciler.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]


def test_each_launch_of_a_plan_with_the_gpu_totals_it_needs(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("llama-server", "vllm", "ollama"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    pipeline = Pipeline(profile="a100-80g")
    desired = pipeline.load(ROOT / "desired" / "mixed-backends.yaml")
    plan = pipeline.plan(desired)
    spec = desired.file.spec
    units = render_plan(plan, spec, state_dir=tmp_path, environ={"PATH": str(bin_dir)})
    assert [(u.action.model, u.rendered.argv[0]) for u in units] == [
        ("vllm-qwen", str(bin_dir / "vllm")),
        ("gemma", str(bin_dir / "llama-server")),
        ("ollama-llama", str(bin_dir / "ollama")),
    ]
    assert all(u.problem is None for u in units)
    only = render_plan(
        plan, spec, state_dir=tmp_path, models={"gemma"}, environ={"PATH": str(bin_dir)}
    )
    assert [u.action.model for u in only] == ["gemma"]
    with pytest.raises(ApplyError, match="vLLM not found"):
        render_plan(plan, spec, state_dir=tmp_path, environ={"PATH": ""})
    lenient = render_plan(plan, spec, state_dir=tmp_path, environ={"PATH": ""}, strict=False)
    assert [u.rendered.argv[0] for u in lenient] == ["vllm", "llama-server", "ollama"]
    assert all(u.problem for u in lenient)
