"""The applier's own rules, with an executor and a machine played in memory: measured memory
beside the estimate, and memory that is not released."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.apply.applier import Applier
from reconciler.apply.process import Started, Stopped
from reconciler.apply.units import Rendered
from reconciler.config.desired import Desired, ModelSpec
from reconciler.config.loader import load_profile
from reconciler.errors import ApplyError
from reconciler.launch import Launch
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
        self.launch: Launch | None = None  # what the instances were started with

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
                launch=self.launch,
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


def healthy(r: Rendered, alive: Callable[[], bool], timeout_s: float) -> tuple[bool, str]:
    return True, ""


def applier(
    tmp_path: Path,
    machine: Memory,
    said: list[str],
    *,
    executor: Executor | None = None,
    render: Callable[[Action, ModelSpec], Rendered] = rendered,
    ready: Callable[[Rendered, Callable[[], bool], float], tuple[bool, str]] = healthy,
    release: bool = True,
    on_crash: Callable[[JournalEntry], None] | None = None,
) -> Applier:
    """An applier on the machine played in memory (its executor unless one is given)."""
    return Applier(
        state_dir=tmp_path,
        executor=executor or Executor(machine, release=release),
        render=render,
        ready=ready,
        observe=machine.observe,
        say=said.append,
        release_timeout_s=0.3,
        on_crash=on_crash,
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


def test_a_launch_that_cannot_be_rendered_changes_nothing(tmp_path: Path) -> None:
    """Rendering comes before any stop: a restart whose new launch cannot be rendered leaves
    the running instance alone."""
    machine, said = Memory(held=1000), []
    first = applier(tmp_path, machine, said)
    first.carry_out(make_plan(DESIRED, machine.observe(), {}), DESIRED)
    machine.launch = first.journal()[0].launch
    changed = Desired.model_validate(
        {
            "version": 1,
            "models": [
                {"name": "chat", "backend": "command", "argv": ["/bin/d"], "vram_mib": 1000}
            ],
        }
    )
    plan = make_plan(changed, machine.observe(), {})
    assert [a.action for a in plan.actions] == ["restart"]

    def broken(action: Action, spec: ModelSpec) -> Rendered:
        raise ApplyError("chat: program /bin/d not found")

    second = applier(tmp_path, machine, said, render=broken)
    with pytest.raises(ApplyError, match="program /bin/d not found\nnothing was changed"):
        second.carry_out(plan, changed)
    assert machine.pids == {4242}
    assert [e.pid for e in second.journal()] == [4242]


def test_a_start_that_fails_is_reported_and_the_others_go_on(tmp_path: Path) -> None:
    machine, said = Memory(held=1000), []
    two = Desired.model_validate(
        {
            "version": 1,
            "models": [
                {"name": "a", "backend": "command", "argv": ["/bin/a"], "vram_mib": 1000},
                {"name": "b", "backend": "command", "argv": ["/bin/b"], "vram_mib": 1000},
            ],
        }
    )

    class Flaky(Executor):
        def start(self, rendered: Rendered) -> Started:
            if rendered.model == "a":
                raise ApplyError("a: cannot start /bin/a (No such file or directory)")
            return super().start(rendered)

    def named(action: Action, spec: ModelSpec) -> Rendered:
        return Rendered(
            model=spec.name,
            variant=spec.name,
            backend="command",
            unit=f"reconciler-{spec.name}",
            argv=(f"/bin/{spec.name}",),
            env={},
        )

    flaky = applier(tmp_path, machine, said, executor=Flaky(machine), render=named)
    outcome = flaky.carry_out(make_plan(two, machine.observe(), {}), two)
    assert outcome.failed == ["a: cannot start /bin/a (No such file or directory)"]
    assert outcome.started == ["b"]
    assert outcome.code == 1


def test_ctrl_c_during_a_start_waits_until_the_start_is_journaled() -> None:
    from reconciler.apply.applier import _deferred_signals

    reached: list[str] = []

    def start_then_journal() -> None:
        with _deferred_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            reached.append("journaled")  # not interrupted before this

    with pytest.raises(KeyboardInterrupt):
        start_then_journal()
    assert reached == ["journaled"]
    with _deferred_signals():  # what starts inside does not inherit a blocked SIGTERM
        child = subprocess.Popen(["sleep", "30"])
    child.terminate()
    assert child.wait(5) == -signal.SIGTERM
