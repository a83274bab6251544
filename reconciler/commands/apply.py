"""`reconcile apply`: carry a plan out (like `terraform apply`); `reconcile down`.

`apply [FILE | PLAN.json]` takes the state folder's lock, observes and plans again (or, for a
saved plan, refuses it when anything it was computed from changed), shows the plan, asks for
confirmation on a terminal (`--yes` skips; without a terminal and without `--yes` it refuses),
then carries it out. `--profile` and `--observed` simulate the GPUs; the processes are real.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from reconciler.apply.crashes import BACKOFF_FIRST_S, BACKOFF_MAX_S, CRASH_LIMIT, CRASH_WINDOW_S
from reconciler.errors import ApplyError
from reconciler.observe.journal import JournalEntry, default_state_dir

if TYPE_CHECKING:
    from reconciler.apply.applier import Applier, Outcome
    from reconciler.apply.crashes import Noted, Policy
    from reconciler.apply.units import Rendered
    from reconciler.config.desired import Desired, ModelSpec
    from reconciler.pipeline import Pipeline
    from reconciler.plan.model import Action, Plan

# The modules that start processes and render templates are imported by the command
# functions, when they run: `reconcile --help` and the other commands do not load them.

__all__ = ["add_arguments", "apply_command", "down_command"]


def add_arguments(p: argparse.ArgumentParser, *, down: bool = False, confirm: bool = True) -> None:
    if not down:
        p.add_argument(
            "file",
            nargs="?",
            default="desired.yaml",
            help="the desired-state file, or a plan saved by `reconcile plan -o` (.json)",
        )
    if confirm:
        p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--profile", metavar="NAME|PATH", help="simulated GPUs: a profile")
    source.add_argument("--observed", metavar="FILE", help="simulated GPUs: a snapshot")
    p.add_argument("--state-dir", metavar="DIR", help="the state folder (journal, logs, lock)")
    p.add_argument(
        "--lock-timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds to wait for another apply to finish (default 600)",
    )
    p.add_argument("--stop-timeout", type=float, default=10.0, metavar="S")
    p.add_argument(
        "--executor",
        choices=("process", "systemd"),
        default="process",
        help="process: detached process groups with a log each (default); systemd: units "
        "reconciler-<model>.service",
    )
    p.add_argument(
        "--system",
        action="store_true",
        help="with --executor systemd: system units (/etc/systemd/system) instead of --user",
    )
    if not down:
        p.add_argument("--templates", metavar="DIR", help="templates overriding ours, by file")
        p.add_argument(
            "--health-timeout",
            type=float,
            default=600.0,
            metavar="S",
            help="seconds an instance may take to become healthy (default 600)",
        )
        _crash_arguments(p)


def _crash_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backoff",
        type=float,
        default=BACKOFF_FIRST_S,
        metavar="S",
        help=f"seconds before a crashed model starts again, doubled after each further crash "
        f"(default {BACKOFF_FIRST_S:g}, at most {BACKOFF_MAX_S:g})",
    )
    p.add_argument(
        "--crash-limit",
        type=int,
        default=CRASH_LIMIT,
        metavar="N",
        help=f"crashes of one launch within --crash-window that mark a model crash-looping: "
        f"not started again until its launch changes or `reconcile reset` (default {CRASH_LIMIT})",
    )
    p.add_argument(
        "--crash-window",
        type=float,
        default=CRASH_WINDOW_S,
        metavar="S",
        help=f"seconds over which crashes are counted (default {CRASH_WINDOW_S:g})",
    )


def _say(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) if args.state_dir else default_state_dir()


def _confirm(args: argparse.Namespace, out: TextIO, question: str) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise ApplyError(
            "not on a terminal: nothing was changed; pass --yes to carry the plan out "
            "without confirmation"
        )
    out.write(f"{question} Only 'yes' will be accepted: ")
    out.flush()
    return sys.stdin.readline().strip() == "yes"


def _renderer(
    desired: Desired, plan: Plan, args: argparse.Namespace, state_dir: Path
) -> Callable[[Action, ModelSpec], Rendered]:
    """Each launch rendered as `reconcile render` shows it: templates from `--templates`,
    else the desired file's `templates:`, over ours; GPU totals from the plan."""
    from reconciler.apply.programs import resolve_program  # noqa: PLC0415
    from reconciler.apply.render import render  # noqa: PLC0415

    totals = {g.label: g.total_mib for g in plan.gpus}
    templates = Path(args.templates) if args.templates else desired.templates
    # Instances run in the desired file's folder: relative paths in a command's argv (like
    # `gguf:` paths) mean what they mean beside the file.
    workdir = Path(plan.desired_file).parent if plan.desired_file else None

    def make(action: Action, spec: ModelSpec) -> Rendered:
        assert action.launch is not None  # the applier checks
        return render(
            action.launch,
            spec,
            program=resolve_program(action.launch, desired, os.environ),
            executor=args.executor,
            templates=templates,
            state_dir=state_dir,
            gpu_total_mib=totals,
            stop_timeout_s=args.stop_timeout,
            workdir=workdir,
        )

    return make


def _readiness(
    out: TextIO, state_dir: Path, *, progress: bool = True
) -> Callable[[Rendered, Callable[[], bool], float], tuple[bool, str]]:
    """Waiting for health: on a terminal one line that updates (model, seconds, the last line
    of its log); otherwise nothing until the applier says ready or failed."""
    from reconciler.apply.health import Probe, wait_ready  # noqa: PLC0415
    from reconciler.apply.process import log_path  # noqa: PLC0415

    tty = progress and out.isatty()

    def ready(rendered: Rendered, alive: Callable[[], bool], timeout_s: float) -> tuple[bool, str]:
        def progress(elapsed: float, seen: Probe) -> None:
            last = _last_line(log_path(state_dir, rendered.unit))
            out.write(f"\r\x1b[K  {rendered.model}: {elapsed:4.0f} s  {seen.state}  {last[:60]}")
            out.flush()

        probe = wait_ready(
            rendered, alive=alive, timeout_s=timeout_s, on_progress=progress if tty else None
        )
        if tty:
            out.write("\r\x1b[K")
        return probe.ready, probe.detail

    return ready


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(handle.tell() - 4096, 0))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def _policy(args: argparse.Namespace) -> Policy:
    from reconciler.apply.crashes import Policy  # noqa: PLC0415

    if getattr(args, "crash_limit", CRASH_LIMIT) < 1:
        raise ApplyError("--crash-limit must be at least 1")
    if getattr(args, "backoff", BACKOFF_FIRST_S) < 0:
        raise ApplyError("--backoff must not be negative")
    return Policy(
        limit=getattr(args, "crash_limit", CRASH_LIMIT),
        window_s=getattr(args, "crash_window", CRASH_WINDOW_S),
        first_s=getattr(args, "backoff", BACKOFF_FIRST_S),
        max_s=max(BACKOFF_MAX_S, getattr(args, "backoff", BACKOFF_FIRST_S)),
    )


def _recorder(
    args: argparse.Namespace, report: Callable[[Noted], None]
) -> Callable[[JournalEntry], None]:
    """What the applier calls for an instance that crashed: recorded, then reported."""
    from reconciler.apply.crashes import CrashBook  # noqa: PLC0415

    book = CrashBook(_state_dir(args), _policy(args))

    def crashed(entry: JournalEntry) -> None:
        last = _last_line(Path(entry.log)) if entry.log else ""
        report(book.record(entry, last or None))

    return crashed


def _held(plan: Plan, args: argparse.Namespace) -> Plan:
    """`plan` with the starts of models in backoff after a crash, or crash-looping, blocked."""
    from reconciler.apply.crashes import CrashBook, hold  # noqa: PLC0415

    return hold(plan, CrashBook(_state_dir(args)).read(), time.time(), _policy(args))


def _applier(
    args: argparse.Namespace,
    pipeline: Pipeline,
    out: TextIO,
    render: Callable[[Action, ModelSpec], Rendered] | None = None,
    say: Callable[[str], None] | None = None,
    *,
    on_crash: Callable[[JournalEntry], None] | None = None,
) -> Applier:
    """The applier of these options; its lines go to `out`, or to `say` (the watcher's log,
    with no progress line). A crash is recorded and said, or handed to `on_crash`."""
    from reconciler.apply import systemd  # noqa: PLC0415
    from reconciler.apply.applier import Applier  # noqa: PLC0415
    from reconciler.apply.process import ProcessExecutor  # noqa: PLC0415
    from reconciler.apply.unitexec import SystemdInstances  # noqa: PLC0415

    state_dir = _state_dir(args)
    process = ProcessExecutor(state_dir, stop_timeout_s=args.stop_timeout)
    runner = systemd.run_command  # looked up now: tests put a stand-in for systemctl there
    units = SystemdInstances(
        systemd.SystemdExecutor(scope="system", runner=runner)
        if args.system
        else systemd.SystemdExecutor(scope="user", runner=runner),
        state_dir,
    )
    chosen, other = (units, process) if args.executor == "systemd" else (process, units)
    speak = say or (lambda line: _say(out, line))
    return Applier(
        state_dir=state_dir,
        executor=chosen,
        others={other.name: other},
        render=render,
        ready=_readiness(out, state_dir, progress=say is None),
        observe=pipeline.observe,
        say=speak,
        health_timeout_s=getattr(args, "health_timeout", 600.0),
        on_crash=on_crash or _recorder(args, lambda noted: speak(f"! {noted.message}")),
    )


def _pipeline(args: argparse.Namespace) -> Pipeline:
    from reconciler.pipeline import Pipeline  # noqa: PLC0415

    return Pipeline(
        observed=args.observed, profile=args.profile, state_dir=_state_dir(args), journal=True
    )


def _summary(outcome: Outcome, out: TextIO, verb: str = "Apply") -> int:
    for warning in outcome.warnings:
        out.write(f"warning: {warning}\n")
    for failure in outcome.failed:
        out.write(f"error: {failure}\n")
    parts = [f"{len(outcome.started)} started", f"{len(outcome.stopped)} stopped"]
    if outcome.failed:
        parts.append(f"{len(outcome.failed)} failed")
    out.write(f"{verb} complete: " + ", ".join(parts) + ".\n")
    return outcome.code


def apply_command(args: argparse.Namespace, out: TextIO) -> int:
    from reconciler.apply.lock import state_lock  # noqa: PLC0415
    from reconciler.plan.stale import stale  # noqa: PLC0415
    from reconciler.plan.views import plan_text  # noqa: PLC0415
    from reconciler.planfile import load_saved_plan  # noqa: PLC0415

    state_dir = _state_dir(args)
    pipeline = _pipeline(args)
    saved: Plan | None = None
    file = args.file
    if str(file).endswith(".json"):
        saved = load_saved_plan(file)
        if saved.desired_file is None:
            raise ApplyError(f"{file}: the saved plan does not name its desired file; plan again")
        file = saved.desired_file
    with state_lock(state_dir, timeout_s=args.lock_timeout, on_wait=lambda m: _say(out, m)):
        loaded = pipeline.load(file)
        if saved is not None:
            problems = stale(saved, pipeline.inputs(file), plan_file=args.file)
            if problems:
                raise ApplyError(
                    "Saved plan is stale: nothing was changed.\n"
                    + "\n".join(f"  {p}" for p in problems)
                )
        # The journal brought up to date first: instances that have gone are dropped, a unit
        # systemd restarted is followed; then the plan sees what really runs.
        _applier(args, pipeline, out).prune()
        plan = _held(saved or pipeline.plan(loaded), args)  # a crashed model waits its turn
        for line in plan_text(plan, colour=False):
            out.write(line + "\n")
        if not plan.changes:
            return 0
        if not _confirm(args, out, "Carry out this plan?"):
            out.write("Apply cancelled: nothing was changed.\n")
            return 1
        spec = loaded.file.spec
        applier = _applier(args, pipeline, out, render=_renderer(spec, plan, args, state_dir))
        return _summary(applier.carry_out(plan, spec), out)


def down_command(args: argparse.Namespace, out: TextIO) -> int:
    from reconciler.apply.lock import state_lock  # noqa: PLC0415

    state_dir = _state_dir(args)
    pipeline = _pipeline(args)
    with state_lock(state_dir, timeout_s=args.lock_timeout, on_wait=lambda m: _say(out, m)):
        applier = _applier(args, pipeline, out)
        entries = applier.journal()
        if not entries:
            out.write("Nothing to stop: the journal lists no instance.\n")
            return 0
        for e in entries:
            out.write(f"  - stop {e.model} (pid {e.pid})\n")
        if not _confirm(args, out, f"Stop these {len(entries)} instances?"):
            out.write("Down cancelled: nothing was changed.\n")
            return 1
        return _summary(applier.stop_all(), out, "Down")
