"""CPU time of one observation (what `reconcile watch` pays every second).

A fake NVML of 8 GPUs x 20 processes (real, running pids, so the process table is really
read), then the real NVML where there is one. Prints CPU milliseconds per observation.

    .venv/bin/python bench/observe_cost.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.observe.observer import Observer  # noqa: E402
from reconciler.observe.processes import SETTLE_S  # noqa: E402
from tests.observe.fake_nvml import MIB, FakeGpu, FakeNvml  # noqa: E402

RUNS = 200


def cpu_ms(observer: Observer, runs: int = RUNS) -> tuple[float, float]:
    observer.observe()  # the first observation reads the static facts
    start = time.process_time()
    for _ in range(runs):
        observer.observe()
    steady = (time.process_time() - start) / runs * 1000
    fresh = Observer(observer.nvml._module)
    start = time.process_time()
    fresh.observe()
    return steady, (time.process_time() - start) * 1000


def main() -> int:
    sleepers = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]) for _ in range(20)
    ]
    try:
        time.sleep(SETTLE_S + 0.5)  # younger processes are read afresh, not from the cache
        pids = [p.pid for p in sleepers]
        gpus = [
            FakeGpu(
                uuid=f"GPU-{i}",
                compute=[(pid, 100 * MIB) for pid in pids[:15]],
                graphics=[(pid, 50 * MIB) for pid in pids[15:]],
            )
            for i in range(8)
        ]
        steady, first = cpu_ms(Observer(FakeNvml(gpus)))
        print(
            f"fake NVML, 8 GPUs x 20 processes: {steady:.2f} ms CPU per observation "
            f"(first, with static facts: {first:.2f} ms)"
        )
    finally:
        for p in sleepers:
            p.kill()
            p.wait()
    real = Observer()
    if real.nvml.start():
        steady, first = cpu_ms(real)
        count = len(real.observe().gpus)
        print(
            f"real NVML, {count} GPU(s): {steady:.2f} ms CPU per observation "
            f"(first: {first:.2f} ms)"
        )
    else:
        print(f"real NVML: not measured ({real.nvml.note})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
