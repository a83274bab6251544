"""What apply launches: one instance rendered from its `Launch` (argv, environment, health)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["LABEL", "Rendered"]

LABEL = "RECONCILER_INSTANCE"  # the label in every process we start: value = the model's name


@dataclass(frozen=True)
class Rendered:
    """One instance, ready to start: nothing here is decided by the executor."""

    model: str  # the desired entry it serves
    variant: str  # the entry that runs
    backend: Literal["llama.cpp", "vllm", "ollama", "command"]
    unit: str  # "reconciler-<model>": the systemd unit, the log file, the journal's unit
    argv: tuple[str, ...]  # argv[0] resolved to a path; never a shell string
    env: dict[str, str]  # added to the environment: our label, CUDA_*, the model's env
    secret_names: frozenset[str] = frozenset()  # env names whose values are never shown
    health_url: str | None = None  # GET; ready on 200 (llama.cpp answers 503 while loading;
    # ollama: the server answers, then `load` is posted and `ready_url` lists the model)
    load: dict[str, Any] | None = None  # ollama: the body of POST /api/generate that loads it
    ready_url: str | None = None  # ollama: GET /api/ps lists the model when it is loaded
    unit_text: str | None = None  # the systemd unit, for the systemd executor
    launch_hash: str = ""
    env_file: str | None = None  # systemd: where the unit reads `secret_names` from (0600)
    cwd: str | None = None  # the folder it runs in: the state folder
    extra: dict[str, Any] = field(default_factory=dict)  # per backend, for the health check
