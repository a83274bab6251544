"""Who owns a GPU process, decided with real processes: label, journal, children, pid reuse."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from reconciler.observe import processes
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
        _wait_for_exec(proc.pid, argv)
        return proc

    yield start
    for proc in started:
        for child in (
            psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        ):
            child.kill()
        proc.kill()
        proc.wait()


def _wait_for_exec(pid: int, argv: list[str]) -> None:
    """Popen returns once exec() has begun; the new program's command line and environment
    show in /proc a moment later (until then both read as empty)."""
    for _ in range(250):
        if psutil.Process(pid).cmdline() == argv:
            return
        time.sleep(0.02)
    raise AssertionError(f"{pid} did not start {argv}")


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
    _wait_for_exec(child_pid, SLEEP)
    plain = spawn(SLEEP)  # the same command, no label: foreign
    time.sleep(0.2)
    gpu = FakeGpu(
        compute=[(child_pid, 3000 * MIB), (plain.pid, 500 * MIB)],
        graphics=[(parent.pid, 200 * MIB)],
    )
    state = Observer(FakeNvml([gpu])).observe()
    owners = {p.pid: (p.owner, p.instance) for p in state.gpus[0].processes}
    assert owners == {
        child_pid: ("ours", "chat"),
        plain.pid: ("foreign", None),
        parent.pid: ("ours", "chat"),
    }
    (instance,) = state.instances
    assert (instance.model, instance.source, instance.used_mib, instance.gpus) == (
        "chat",
        "label",
        3200,
        ("0",),
    )
    # The instance is the top of the labelled tree (the child inherited the label).
    assert (instance.pid, instance.start_time) == (parent.pid, _start_time(parent.pid))
    (foreign,) = [p for p in state.gpus[0].processes if p.owner == "foreign"]
    assert (foreign.used_mib, foreign.name, foreign.user) == (
        500,
        psutil.Process(plain.pid).name(),
        psutil.Process(plain.pid).username(),
    )
    assert foreign.cmdline == tuple(SLEEP)


def test_child_of_a_journaled_process_counts_as_it(spawn) -> None:  # type: ignore[no-untyped-def]
    parent = spawn(WITH_CHILD)  # no label: the journal alone says it is ours
    child_pid = int(parent.stdout.readline())
    _wait_for_exec(child_pid, SLEEP)
    journal = [JournalEntry(model="embed", pid=parent.pid, start_time=_start_time(parent.pid))]
    gpus = [FakeGpu(uuid="GPU-a"), FakeGpu(uuid="GPU-b", compute=[(child_pid, 900 * MIB)])]
    state = Observer(FakeNvml(gpus)).observe(iter(journal))  # any iterable of entries
    assert [(p.pid, p.owner, p.instance) for p in state.gpus[1].processes] == [
        (child_pid, "ours", "embed")
    ]
    (instance,) = state.instances
    assert (instance.pid, instance.state, instance.source, instance.gpus, instance.used_mib) == (
        parent.pid,
        "running",
        "journal",
        ("1",),
        900,
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


def test_a_gone_journal_entry_does_not_hide_a_labelled_instance(spawn) -> None:  # type: ignore[no-untyped-def]
    labelled = spawn(SLEEP, label="chat")
    start = _start_time(labelled.pid)
    # The journal's "chat" died (its pid is now the labelled process's, started later).
    journal = [JournalEntry(model="chat", pid=labelled.pid, start_time=start - 50.0)]
    state = Observer(FakeNvml([FakeGpu(compute=[(labelled.pid, 800 * MIB)])])).observe(journal)
    assert [(i.model, i.pid, i.state, i.source, i.used_mib) for i in state.instances] == [
        ("chat", labelled.pid, "gone", "journal", 0),
        ("chat", labelled.pid, "running", "label", 800),
    ]


def test_cached_facts_follow_a_later_exec(spawn, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    # A wrapper that becomes another program later keeps its pid and start time: its facts
    # must not be served from the cache (the command name is part of the cache key).
    monkeypatch.setattr(processes, "SETTLE_S", 0.0)  # cache at once
    sleep = shutil.which("sleep")
    assert sleep is not None
    wrapper = spawn(
        [
            sys.executable,
            "-c",
            f"import os, time; time.sleep(0.5); os.execv({sleep!r}, ['sleep', '60'])",
        ]
    )
    observer = Observer(FakeNvml([FakeGpu(compute=[(wrapper.pid, MIB)])]))
    assert observer.observe().gpus[0].processes[0].cmdline[0] == sys.executable
    for _ in range(100):
        if psutil.Process(wrapper.pid).cmdline() == ["sleep", "60"]:
            break
        time.sleep(0.02)
    assert observer.observe().gpus[0].processes[0].cmdline == ("sleep", "60")


def test_a_command_line_that_is_not_utf8_is_read_as_escapes(spawn) -> None:  # type: ignore[no-untyped-def]
    argv = [*SLEEP, "\udcff\x1b[2J"]  # the bytes ff 1b: not UTF-8, and an escape sequence
    proc = spawn(argv)
    info = processes._read(proc.pid)
    assert info is not None
    assert info.cmdline[-1] == "\\xff\\x1b[2J"
    info.cmdline[-1].encode("utf-8")  # printable, and writable as JSON
