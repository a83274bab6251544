"""`reconcile logs MODEL [-f]`: an instance's log (the process executor writes one each)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TextIO

from reconciler.errors import ApplyError
from reconciler.observe.journal import JOURNAL, default_state_dir, read_journal

__all__ = ["add_arguments", "logs_command"]

FOLLOW_POLL_S = 0.25


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="the model (or the variant that runs for it)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing what it writes")
    p.add_argument("-n", "--lines", type=int, default=50, help="lines from the end (default 50)")
    p.add_argument("--state-dir", metavar="DIR", help="the state folder (journal, logs, lock)")


class _Unit(str):
    """A systemd unit: its output is in the systemd journal, not in a file."""


def _log_of(state_dir: Path, model: str) -> Path | _Unit:
    entries = read_journal(state_dir / JOURNAL)
    for e in entries:
        if model not in (e.model, e.launch.model if e.launch else None):
            continue
        if e.executor == "systemd" and e.unit is not None:
            return _Unit(e.unit)
        if e.log:
            return Path(e.log)
    fallback = state_dir / "logs" / f"reconciler-{model}.log"
    if fallback.exists():
        return fallback
    known = sorted({e.model for e in entries})
    listed = ", ".join(known) if known else "none"
    raise ApplyError(
        f"no log for {model}: the journal in {state_dir} lists {listed}; "
        "`reconcile status` shows what runs"
    )


def logs_command(args: argparse.Namespace, out: TextIO) -> int:
    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir()
    path = _log_of(state_dir, args.model)
    if isinstance(path, _Unit):
        return _journal(path, args, out)
    try:
        with open(path, "rb") as handle:
            lines = handle.read().decode(errors="replace").splitlines()
            for line in lines[-args.lines :] if args.lines > 0 else lines:
                out.write(line + "\n")
            out.flush()
            while args.follow:  # until Ctrl-C
                chunk = handle.read()
                if chunk:
                    out.write(chunk.decode(errors="replace"))
                    out.flush()
                else:
                    time.sleep(FOLLOW_POLL_S)
    except FileNotFoundError:
        raise ApplyError(f"{path}: the log is gone (the state folder was cleaned?)") from None
    return 0


def _journal(unit: str, args: argparse.Namespace, out: TextIO) -> int:
    """A systemd instance's output, from journalctl (followed by journalctl itself)."""
    from reconciler.apply.systemd import SystemdExecutor, run_command  # noqa: PLC0415

    argv = SystemdExecutor().logs_argv(unit, max(args.lines, 1))
    if args.follow:
        raise ApplyError(
            f"{args.model} runs as the systemd unit {unit}.service; follow its output with "
            f"`{' '.join([*argv, '-f'])}`"
        )
    done = run_command(argv)
    if done.returncode != 0:
        raise ApplyError(f"`{' '.join(argv)}` failed: {(done.stderr or done.stdout).strip()}")
    out.write(done.stdout)
    return 0
