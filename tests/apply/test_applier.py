"""The applier's own rules, with an executor and a machine played in memory: measured memory
beside the estimate, and memory that is not released."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.apply.applier import Applier
from reconciler.apply.process import Started, Stopped
from reconciler.apply.units import Rendered
from reconciler.config.desired import Desired, ModelSpec
from reconciler.config.loader import load_profile
from reconciler.errors import ApplyError
from reconciler.observe.journal import JournalEntry
from reconciler.observe.snapshot import from_profile
from reconciler.plan.model import Action
from reconciler.plan.planner import make_plan
from reconciler.state import GpuProcess, Instance, ObservedState

DESIRED = Desired.model_validate(
    {
        "version": 1,
        "models": [{"name": "chat", "backend": "command", "argv": ["/bin/c"], "vram_mib": 1000}],
    }
)


class Memory:
    """A machine whose instances hold `held` MiB on GPU 0."""

    def __init__(self, held: int) -> None:
        self.held = held
        self.pids: set[int] = set()

    def observe(self) -> ObservedState:
        base = from_profile(load_profile("rtx4090").spec, "rtx4090")
        gpu = base.gpus[0].model_copy(
            update={
                "processes": tuple(
                    GpuProcess(pid=p, used_mib=self.held, kind="compute", owner="ours")
                    for p in self.pids
                )
            }
        )
        instances = tuple(
            Instance(
                model="chat",
                pid=p,
                start_time=1.0,
                gpus=("0",),
                used_mib=self.held,
                used_by_gpu={"0": self.held},
            )
            for p in self.pids
        )
        return base.model_copy(update={"gpus": (gpu,), "instances": instances})


class Executor:
    name = "process"

    def __init__(self, machine: Memory, *, release: bool = True) -> None:
        self.machine, self.release = machine, release

    def start(self, rendered: Rendered) -> Started:
        self.machine.pids.add(4242)
        return Started(4242, 1.0, None)

    def alive(self, entry: JournalEntry) -> bool:
        return entry.pid in self.machine.pids

    def stop(self, entry: JournalEntry) -> Stopped:
        if self.release:
            self.machine.pids.discard(entry.pid)
        return Stopped("SIGTERM")

    def log_tail(self, unit: str, lines: int = 20) -> list[str]:
        return []


def rendered(action: Action, spec: ModelSpec) -> Rendered:
    return Rendered(
        model="chat",
        variant="chat",
        backend="command",
        unit="reconciler-chat",
        argv=("/bin/c",),
        env={},
    )


def applier(tmp_path: Path, machine: Memory, said: list[str], **kw: bool) -> Applier:
    return Applier(
        state_dir=tmp_path,
        executor=Executor(machine, **kw),
        render=rendered,
        ready=lambda r, alive, t: (True, ""),
        observe=machine.observe,
        say=said.append,
        release_timeout_s=0.3,
    )


def test_measured_above_the_estimate_by_more_than_ten_percent_is_a_warning(
    tmp_path: Path,
) -> None:
    machine, said = Memory(held=1200), []
    plan = make_plan(DESIRED, machine.observe(), {})
    outcome = applier(tmp_path, machine, said).carry_out(plan, DESIRED)
    assert outcome.code == 0
    assert outcome.warnings == [
        "chat: GPU 0 holds 1200 MiB, 200 MiB more than the 1000 MiB estimated (over 10%); "
        "the plan may overcommit this GPU: report it with `reconcile status`"
    ]
    (entry,) = applier(tmp_path, machine, said).journal()
    assert (entry.estimate_mib, entry.measured_mib) == ({"0": 1000, "host": 0}, {"0": 1200})


def test_within_ten_percent_is_quiet(tmp_path: Path) -> None:
    machine, said = Memory(held=1090), []
    plan = make_plan(DESIRED, machine.observe(), {})
    assert applier(tmp_path, machine, said).carry_out(plan, DESIRED).warnings == []


def test_memory_not_released_after_a_stop_starts_nothing_and_says_who_holds_it(
    tmp_path: Path,
) -> None:
    machine, said = Memory(held=1000), []
    first = applier(tmp_path, machine, said)
    first.carry_out(make_plan(DESIRED, machine.observe(), {}), DESIRED)
    stuck = applier(tmp_path, machine, said, release=False)
    with pytest.raises(ApplyError, match=r"still hold GPU memory after 0.3 s: pid 4242 \(1000 MiB"):
        stuck.stop_all()
