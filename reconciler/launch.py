"""A resolved launch: everything an applier needs to start one instance, and its hash.

The planner resolves every start, restart, move and keep into a `Launch`; the journal records
the launch an instance was started with; comparing the two hashes says whether a running
instance is what the desired file asks for, and `differences` says which fields are not.

The hash is computed from a canonical form: keys sorted, tuples as lists, every default filled
in, the split as rounded fractions, so that the order of `env` keys, how a list was written or
whether a default was spelled out never changes it. Placement (which GPUs) is not part of the
hash: a change of GPUs is a move, a change of anything else a restart.

Secrets: the values of `env` (which may come from `${env.X}`) are never stored, printed or
hashed in clear. A launch keeps, per name, a slow salted digest (PBKDF2) of the value: enough
to notice that a value changed, useless for guessing it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from reconciler.frozen import Frozen

__all__ = ["Launch", "env_digests", "fractions"]

DIGEST_SALT = b"gpu-reconciler env value v1"
DIGEST_ROUNDS = 20_000
PLACEMENT = ("gpus", "gpu_uuids")  # not hashed: a change there is a move


def env_digests(env: Mapping[str, str]) -> dict[str, str]:
    """Name -> a digest of its value that says whether it changed, not what it is."""
    return {name: _digest(name, value) for name, value in sorted(env.items())}


@functools.lru_cache(maxsize=4096)
def _digest(name: str, value: str) -> str:
    """Slow on purpose (PBKDF2), so computed once per value for the life of the process:
    every plan resolves every launch, and the watcher plans every second."""
    return hashlib.pbkdf2_hmac(
        "sha256", value.encode(), DIGEST_SALT + name.encode(), DIGEST_ROUNDS
    ).hex()[:16]


def fractions(shares: tuple[float, ...] | None) -> tuple[float, ...] | None:
    """A tensor split as fractions of 1, rounded so that equal splits hash equally."""
    if not shares:
        return None
    total = sum(shares)
    if total <= 0:
        return None
    return tuple(round(s / total, 4) for s in shares)


class Launch(Frozen):
    """One instance as it is (to be) started. Fields that do not apply are None."""

    model: str = Field(description="The desired entry this instance serves.")
    variant: str = Field(description="The entry that runs: the model or one of its fallbacks.")
    backend: Literal["llama.cpp", "vllm", "ollama", "command"]
    program: str = Field(
        description="The program to run: llama-server, vllm, ollama, or the command's argv[0] "
        "(apply resolves it to a path)."
    )
    gguf: str | None = None
    source: str | None = Field(None, description="vllm / ollama: the model id or path.")
    argv: tuple[str, ...] | None = Field(None, description="command: the user's argv.")
    ctx: int | None = None
    parallel: int | None = None
    cache_type_k: str | None = None
    cache_type_v: str | None = None
    flash_attn: Literal["on", "off", "auto"] | None = None
    gpu_layers: int | None = Field(
        None, description="Layers offloaded to the GPUs, resolved (all = n_layer + 1)."
    )
    ubatch: int | None = None
    batch: int | None = None
    kv_unified: bool | None = None
    swa_full: bool | None = None
    tensor_split: tuple[float, ...] | None = Field(
        None, description="Fractions of the layers per GPU, in the order of `gpus`."
    )
    tensor_parallel: int | None = Field(None, description="vllm: GPUs in tensor parallelism.")
    host: str = "127.0.0.1"
    port: int | None = None
    env: dict[str, str] = Field(
        default_factory=dict, description="Name -> digest of the value (never the value)."
    )
    extra_args: tuple[str, ...] = ()
    gpus: tuple[str, ...] = Field((), description="GPU labels as NVML numbers them (0, 0/mig1).")
    gpu_uuids: tuple[str, ...] = Field((), description="The same GPUs' UUIDs (GPU-.../MIG-...).")

    def canonical(self) -> str:
        """The hashed form: sorted keys, no placement, no white space."""
        data = self.model_dump(mode="json", exclude=set(PLACEMENT))
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:16]

    def differences(self, old: Launch) -> list[str]:
        """What differs from `old`, as `field old -> new`; env values are never shown."""
        mine: dict[str, Any] = self.model_dump(mode="json", exclude=set(PLACEMENT))
        theirs: dict[str, Any] = old.model_dump(mode="json", exclude=set(PLACEMENT))
        out = []
        for key, value in mine.items():
            if key == "env":
                out += _env_changes(theirs[key], value)
            elif value != theirs[key]:
                out.append(f"{key} {_show(theirs[key])} -> {_show(value)}")
        return out


def _env_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    out = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            out.append(f"env {name} added")
        elif name not in new:
            out.append(f"env {name} removed")
        elif old[name] != new[name]:
            out.append(f"env {name} changed (value not shown)")
    return out


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)
