"""Who owns a GPU process, decided with real processes: label, journal, children, pid reuse."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from reconciler.observe.journal import JournalEntry
from reconciler.observe.observer import Observer
from reconciler.observe.processes import LABEL
from tests.observe.fake_nvml import MIB, FakeGpu, FakeNvml

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]
# A parent that starts a child (like vLLM's workers) and prints the child's pid.
WITH_CHILD = [
    sys.executable,
    "-c",
    "import subprocess, sys, time\n"
    "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print(c.pid, flush=True)\n"
    "time.sleep(60)",
]


@pytest.fixture
def spawn() -> Iterator[object]:
    started: list[subprocess.Popen[str]] = []

    def start(argv: list[str], label: str | None = None) -> subprocess.Popen[str]:
        env = dict(os.environ)
        env.pop(LABEL, None)
        if label:
            env[LABEL] = label
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        for child in (
            psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        ):
            child.kill()
        proc.kill()
        proc.wait()


def _start_time(pid: int) -> float:
    for _ in range(50):
        try:
            return psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            time.sleep(0.02)
    raise AssertionError(pid)


def test_labelled_process_and_its_child_are_ours(spawn) -> None:  # type: ignore[no-untyped-def]
    parent = spawn(WITH_CHILD, label="chat")
    child_pid = int(parent.stdout.readline())
    plain = spawn(SLEEP)  # same interpreter, no label: foreign
    time.sleep(0.2)
    gpu = FakeGpu(compute=[(child_pid, 3000 * MIB), (plain.pid, 500 * MIB)])
    state = Observer(FakeNvml([gpu])).observe()
    owners = {p.pid: (p.owner, p.instance) for p in state.gpus[0].processes}
    assert owners == {child_pid: ("ours", "chat"), plain.pid: ("foreign", None)}
    (instance,) = state.instances
    assert (instance.model, instance.source, instance.used_mib, instance.gpus) == (
        "chat",
        "label",
        3000,
        ("0",),
    )


def test_journal_match_needs_pid_and_start_time(spawn) -> None:  # type: ignore[no-untyped-def]
    ours = spawn(SLEEP)
    other = spawn(SLEEP)
    start = _start_time(ours.pid)
    journal = [
        JournalEntry(model="coder", pid=ours.pid, start_time=start, unit="reconciler-coder"),
        # A journal entry whose pid now belongs to another process (started at another time).
        JournalEntry(model="old", pid=other.pid, start_time=start - 3600.0),
    ]
    gpu = FakeGpu(compute=[(ours.pid, 1000 * MIB), (other.pid, 700 * MIB)])
    state = Observer(FakeNvml([gpu])).observe(journal)
    owners = {p.pid: p.owner for p in state.gpus[0].processes}
    assert owners == {ours.pid: "ours", other.pid: "foreign"}
    by_model = {i.model: (i.state, i.used_mib) for i in state.instances}
    assert by_model == {"coder": ("running", 1000), "old": ("gone", 0)}


def test_a_name_never_makes_a_process_ours(spawn) -> None:  # type: ignore[no-untyped-def]
    impostor = spawn([sys.executable, "-c", "import time; time.sleep(60)", "llama-server"])
    time.sleep(0.1)
    state = Observer(FakeNvml([FakeGpu(compute=[(impostor.pid, MIB)])])).observe()
    assert state.gpus[0].processes[0].owner == "foreign"
    assert state.instances == ()
