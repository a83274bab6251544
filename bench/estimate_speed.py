"""How long `reconcile estimate` takes, and how much memory, on a 40 GB-class model header.

Writes a Llama-70B-shaped Q4_0 GGUF as a sparse file (header only, 37 GiB apparent size),
runs the command several times as a user would, and prints wall time and peak memory.

    .venv/bin/python bench/estimate_speed.py
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.ggufs import SHAPES, write_gguf  # noqa: E402

RUNS = 7


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_gguf(Path(tmp) / "llama-70b-q4_0.gguf", SHAPES["llama-70b"], sparse=True)
        size = path.stat().st_size / 2**30
        argv = [
            str(Path(sys.executable).with_name("reconcile")),
            "estimate",
            str(path),
            "--ctx",
            "8192",
        ]
        times = []
        for _ in range(RUNS):
            start = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - start)
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"file: {size:.1f} GiB (sparse), {RUNS} runs of `reconcile estimate`")
    print(f"wall time: median {statistics.median(times):.3f} s, max {max(times):.3f} s")
    print(f"peak resident memory: {peak_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
