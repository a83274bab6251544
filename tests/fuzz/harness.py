"""One runner for every fuzzing campaign: run `reconcile` in-process on a generated input,
and judge the outcome the way a user would.

A campaign is a seeded generator of inputs (so every failure can be replayed from its seed and
index) run through `run_campaign`. Each input must end in exit 0, 1 or 2 (or the
campaign's own codes) without a traceback, within a time bound; a failure (exit 1) must name
the file it is about; a case may add its own check of the answer. The counts of every
campaign (inputs tried, tracebacks, hangs, slowest input) are printed at the end of the pytest
run by `tests/conftest.py`, so CI's log carries them.

Scale: `RECONCILER_FUZZ_SCALE` multiplies every campaign's number of inputs (default 1, the
CI budget); a long local campaign is `RECONCILER_FUZZ_SCALE=50 make test PYTEST_ARGS=tests/fuzz`.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from reconciler.cli import main

__all__ = [
    "STATS",
    "Campaign",
    "Case",
    "Outcome",
    "run_campaign",
    "run_cli",
    "scaled",
]

#: Seconds one input may take before it counts as a hang (CI machines are small and shared).
TIME_LIMIT_S = float(os.environ.get("RECONCILER_FUZZ_TIME_LIMIT", "5"))


def scaled(count: int) -> int:
    """A campaign's number of inputs times `RECONCILER_FUZZ_SCALE`."""
    return max(1, int(count * float(os.environ.get("RECONCILER_FUZZ_SCALE", "1"))))


class _Hang(BaseException):
    """Raised by the interval timer inside a run that went over its time limit."""


@dataclass(frozen=True)
class Outcome:
    code: int | None  # None: it raised (see `traceback`) or hung
    out: str
    err: str
    seconds: float
    traceback: str | None = None
    hung: bool = False


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def ring(_signum: int, _frame: FrameType | None) -> None:
        raise _Hang

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_cli(argv: list[str], limit_s: float = TIME_LIMIT_S) -> Outcome:
    """`reconcile ARGV` in this process, its output captured; an exception that escapes
    `main` is a traceback, a run over `limit_s` a hang."""
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    code: int | None = None
    trace: str | None = None
    hung = False
    try:
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            _time_limit(limit_s),
        ):
            code = main(argv)
    except _Hang:
        hung = True
    except SystemExit as exc:  # argparse's --help / --version
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - that is what a fuzzer looks for
        trace = traceback.format_exc()
    return Outcome(code, out.getvalue(), err.getvalue(), time.perf_counter() - start, trace, hung)


@dataclass(frozen=True)
class Case:
    """One generated input: `label` says how to replay it (seed, index, mutation); `write`
    puts the input's files in a folder and returns the argv to run there."""

    label: str
    write: Callable[[Path], list[str]]
    #: what a failure's message must name (a file name); None: any one-line message
    names: str | None = None
    #: a campaign's own judgement of a run that passed the runner's rules (what the answer
    #: must hold: a sane plan, a coherent verdict); returns the problem, or None
    check: Callable[[Outcome], str | None] | None = None


@dataclass
class Campaign:
    name: str
    inputs: int = 0
    tracebacks: int = 0
    hangs: int = 0
    other: int = 0
    exits: dict[int, int] = field(default_factory=dict)
    slowest_s: float = 0.0
    slowest: str = ""
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        exits = ", ".join(f"exit {k}: {v}" for k, v in sorted(self.exits.items()))
        return (
            f"{self.name}: {self.inputs} inputs, {self.tracebacks} tracebacks, {self.hangs} "
            f"over {TIME_LIMIT_S:g} s, {self.other} other failures ({exits}); slowest "
            f"{self.slowest_s:.2f} s ({self.slowest})"
        )


#: Every campaign run in this pytest process, printed in the terminal summary.
STATS: dict[str, Campaign] = {}


def _judge(case: Case, outcome: Outcome, exits: tuple[int, ...]) -> str | None:
    if outcome.traceback is not None:
        return f"traceback:\n{outcome.traceback}"
    if outcome.hung:
        return f"took over {TIME_LIMIT_S:g} s"
    if outcome.code not in exits:
        return f"exit {outcome.code}: {outcome.err!r}"
    if "Traceback" in outcome.err:
        return f"a traceback was printed:\n{outcome.err}"
    if outcome.code == 1:
        if not outcome.err.strip():
            return "exit 1 without a message"
        if case.names is not None and case.names not in outcome.err:
            return f"the message does not name {case.names}:\n{outcome.err}"
    return case.check(outcome) if case.check is not None else None


def run_campaign(
    name: str, cases: Iterable[Case], folder: Path, exits: tuple[int, ...] = (0, 1, 2)
) -> Campaign:
    """Run every case in its own sub-folder of `folder`; count and judge the outcomes (`exits`:
    the exit codes the command may give). The caller asserts `not campaign.failures` (the
    first few are kept, with their labels)."""
    campaign = STATS.setdefault(name, Campaign(name))
    for index, case in enumerate(cases):
        work = folder / f"{index:06d}"
        work.mkdir(parents=True)
        argv = case.write(work)
        with contextlib.chdir(work):
            outcome = run_cli(argv)
        campaign.inputs += 1
        campaign.exits[outcome.code if outcome.code is not None else -1] = (
            campaign.exits.get(outcome.code if outcome.code is not None else -1, 0) + 1
        )
        if outcome.seconds > campaign.slowest_s:
            campaign.slowest_s, campaign.slowest = outcome.seconds, case.label
        problem = _judge(case, outcome, exits)
        if problem is None:
            continue
        if outcome.traceback is not None:
            campaign.tracebacks += 1
        elif outcome.hung:
            campaign.hangs += 1
        else:
            campaign.other += 1
        if len(campaign.failures) < 5:
            campaign.failures.append(f"{case.label}: reconcile {' '.join(argv)}: {problem}")
    return campaign
