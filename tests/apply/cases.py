"""Launches and desired entries for rendering tests: one per backend, and hostile ones whose
paths and names hold spaces, quotes, `%`, `$`, backslashes, newlines and unicode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.config.desired import ModelSpec
from reconciler.launch import Launch, env_digests

HOSTILE = 'my model\'s "best" 100% $HOME ${PATH} back\\slash\nnew line\ttab é 模型'
STATE = Path("/home/ada/.local/state/reconciler")
PROGRAMS = {
    "llama.cpp": "/opt/llama.cpp/bin/llama-server",
    "vllm": "/opt/vllm/bin/vllm",
    "ollama": "/usr/local/bin/ollama",
    "command": "/usr/local/bin/my-server",
}
GPU = ("0",), ("GPU-5c2e1a4e-7a1b-4c3d-9e8f-0123456789ab",)
TOTALS = {"0": 24564, "1": 24564}


def case(backend: str, *, hostile: bool = False, **launch: Any) -> tuple[Launch, ModelSpec]:
    """A launch of `backend` on GPU 0 and its desired entry; `launch` overrides fields."""
    odd = f"/models/{HOSTILE}.gguf" if hostile else "/models/chat.gguf"
    env = {"HF_TOKEN": "hf_secret_value_42"} if backend != "llama.cpp" else {}
    spec_fields: dict[str, Any] = {"name": "chat", "backend": backend, "env": env, "port": 8081}
    fields: dict[str, Any] = {
        "model": "chat",
        "variant": "chat",
        "backend": backend,
        "program": Path(PROGRAMS[backend]).name,
        "port": 8081,
        "gpus": GPU[0],
        "gpu_uuids": GPU[1],
    }
    if backend == "llama.cpp":
        fields |= {
            "gguf": odd,
            "ctx": 8192,
            "parallel": 2,
            "cache_type_k": "q8_0",
            "cache_type_v": "q8_0",
            "flash_attn": "on",
            "gpu_layers": 29,
            "ubatch": 512,
            "batch": 2048,
            "kv_unified": False,
            "swa_full": False,
            "extra_args": ("--alias", HOSTILE) if hostile else ("--threads", "8"),
        }
        spec_fields["gguf"] = odd
    elif backend == "vllm":
        fields |= {"source": HOSTILE if hostile else "Qwen/Qwen2.5-7B-Instruct", "ctx": 16384}
        fields |= {"tensor_parallel": 1, "extra_args": ("--enable-prefix-caching",)}
        spec_fields |= {"model": fields["source"], "vram_mib": 12288}
    elif backend == "ollama":
        fields |= {"source": "llama3.1:8b", "ctx": 8192, "port": 11500}
        spec_fields |= {"model": "llama3.1:8b", "vram_mib": 6144, "port": 11500}
    else:
        argv = ("my-server", "--model", odd, "--listen", "127.0.0.1:8081")
        fields |= {"argv": argv, "program": "my-server"}
        spec_fields |= {
            "argv": argv,
            "vram_mib": 2048,
            "health_url": "http://127.0.0.1:8081/ready",
        }
    if hostile:
        env = {**env, "ODD_VALUE": HOSTILE}
        spec_fields["env"] = env
    fields |= launch
    fields["env"] = env_digests(spec_fields["env"])
    return Launch(**fields), ModelSpec(**spec_fields)
