"""`reconcile watch [FILE]`: apply whenever the files or the machine change (see `watch.py`).

SIGINT and SIGTERM end the watcher cleanly and leave the models running (they are the
declared state); `--stop-on-exit` stops them. One log line per action with its reason
(`--log-format json` for machines), and a heartbeat at most every few minutes.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from reconciler.commands.apply import add_arguments as apply_arguments

if TYPE_CHECKING:
    from reconciler.apply.applier import Applier
    from reconciler.apply.crashes import Noted
    from reconciler.pipeline import DesiredInput
    from reconciler.plan.model import Plan

__all__ = ["add_arguments", "watch_command"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    apply_arguments(p, confirm=False)
    p.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds between observations of the machine (default 1)",
    )
    p.add_argument(
        "--hold-off",
        type=float,
        default=30.0,
        metavar="S",
        help="a model that stepped aside for another program returns once its room has been "
        "back this long (default 30)",
    )
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    service = p.add_mutually_exclusive_group()
    service.add_argument(
        "--install-service",
        action="store_true",
        help="run this watch for good: a systemd user service (reconciler-watch) that starts "
        "at login, with these options",
    )
    service.add_argument(
        "--uninstall-service", action="store_true", help="stop and remove that service"
    )
    p.add_argument(
        "--stop-on-exit",
        action="store_true",
        help="stop the models when the watcher ends (by default they keep running)",
    )


def watch_command(args: argparse.Namespace, out: TextIO) -> int:
    from reconciler.commands.apply import (  # noqa: PLC0415
        _applier,
        _held,
        _pipeline,
        _recorder,
        _renderer,
        _say,
        _state_dir,
    )
    from reconciler.watch import Watcher, log_line  # noqa: PLC0415

    if args.install_service or args.uninstall_service:
        return _service(args, out)
    state_dir = _state_dir(args)
    pipeline = _pipeline(args)
    json_format = args.log_format == "json"

    def emit(record: dict[str, Any]) -> None:
        _say(out, log_line(record, json_format=json_format))

    def applied(line: str) -> None:
        emit({"event": "apply", "message": line.strip()})

    def crashed(noted: Noted) -> None:
        emit(
            {
                "event": "crashed",
                "model": noted.model,
                "message": noted.message,
                "crashes": noted.crashes,
                "restart_in_s": noted.delay_s,
            }
        )

    def applier_for(plan: Plan, desired: DesiredInput) -> Applier:
        spec = desired.file.spec
        return _applier(
            args,
            pipeline,
            out,
            render=_renderer(spec, plan, args, state_dir),
            say=applied,
            on_crash=_recorder(args, crashed),
        )

    watcher = Watcher(
        Path(args.file),
        pipeline=pipeline,
        applier_for=applier_for,
        state_dir=state_dir,
        interval_s=args.interval,
        hold_off_s=args.hold_off,
        emit=emit,
        lock_timeout_s=args.lock_timeout,
        hold=lambda plan: _held(plan, args),
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        emit({"event": "stopping", "message": f"{signal.Signals(signum).name} received"})
        watcher.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    emit(
        {
            "event": "watching",
            "file": str(Path(args.file).resolve()),
            "message": f"{args.file} and the machine every {args.interval:g} s",
        }
    )
    watcher.run()
    if args.stop_on_exit:
        from reconciler.apply.lock import state_lock  # noqa: PLC0415

        with state_lock(state_dir, timeout_s=args.lock_timeout):
            outcome = _applier(args, pipeline, out, say=applied).stop_all()
        emit({"event": "stopped", "message": f"{len(outcome.stopped)} models stopped on exit"})
    else:
        emit({"event": "exit", "message": "the models keep running (--stop-on-exit stops them)"})
    return 0


def _passthrough(args: argparse.Namespace) -> list[str]:
    """This watch's options, for the service to run the same (paths made absolute)."""
    out = [
        "--interval",
        f"{args.interval:g}",
        "--hold-off",
        f"{args.hold_off:g}",
        "--executor",
        args.executor,
        "--log-format",
        args.log_format,
        "--health-timeout",
        f"{args.health_timeout:g}",
        "--stop-timeout",
        f"{args.stop_timeout:g}",
        "--lock-timeout",
        f"{args.lock_timeout:g}",
    ]
    if args.system:
        out.append("--system")
    if args.stop_on_exit:
        out.append("--stop-on-exit")
    if args.templates:
        out += ["--templates", str(Path(args.templates).resolve())]
    if args.observed:
        out += ["--observed", str(Path(args.observed).resolve())]
    if args.profile:
        profile = Path(args.profile)
        out += ["--profile", str(profile.resolve()) if profile.exists() else args.profile]
    return out


def _service(args: argparse.Namespace, out: TextIO) -> int:
    from reconciler.apply import systemd  # noqa: PLC0415
    from reconciler.apply.service import install_service, uninstall_service  # noqa: PLC0415
    from reconciler.commands.apply import _state_dir  # noqa: PLC0415

    manager = systemd.SystemdExecutor(scope="user", runner=systemd.run_command)
    if args.uninstall_service:
        gone = uninstall_service(manager)
        out.write(
            f"Removed {gone}; the models keep running (`reconcile down` stops them).\n"
            if gone
            else "No watch service is installed.\n"
        )
        return 0
    file = Path(args.file).resolve()
    argv = [sys.executable, "-m", "reconciler", "watch", str(file)]
    argv += ["--state-dir", str(_state_dir(args).resolve())]  # the service's own home differs
    argv += _passthrough(args)
    path = install_service(manager, argv, file, templates=args.templates and Path(args.templates))
    out.write(
        f"Installed and started {path}: `reconcile watch {file}` runs at login (for it to run "
        "without one: `loginctl enable-linger $USER`). Its log: `journalctl --user -u "
        "reconciler-watch -f`; remove it with `reconcile watch --uninstall-service`.\n"
    )
    return 0
