"""The command line: the only module that prints to the terminal or decides the exit code.

Exit codes: 0 success (no changes), 1 error, 2 changes pending (plan --detailed-exitcode).
Any error a user can cause is printed as one or more plain lines; `--debug` adds a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from reconciler import __version__
from reconciler.commands import estimate as estimate_cmd
from reconciler.commands.check import check
from reconciler.commands.lock import lock
from reconciler.commands.schema import schema
from reconciler.errors import ReconcileError

__all__ = ["main"]

Command = Callable[[argparse.Namespace, TextIO], int]


class UsageError(ReconcileError):
    """The command line itself is wrong."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}; see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="reconcile",
        description="Keep a GPU host's local LLMs in the state declared in desired.yaml.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("check", help="validate desired files, optionally against profiles")
    p.add_argument("files", nargs="+", metavar="FILE", help="desired-state YAML files")
    p.add_argument(
        "--profile",
        action="append",
        metavar="NAME|PATH",
        help="hardware profile (a bundled name such as rtx4090, or a path); repeatable: the "
        "models must fit",
    )
    p.add_argument(
        "--format",
        choices=("text", "github"),
        default="text",
        help="github: ::error annotations on the desired file's lines (GitHub Actions)",
    )
    p.set_defaults(func=check)

    p = sub.add_parser("estimate", help="memory llama-server needs for a GGUF, per device")
    estimate_cmd.add_arguments(p)
    p.set_defaults(func=estimate_cmd.estimate_command)

    p = sub.add_parser("lock", help="write desired.lock.yaml from the GGUF files present")
    p.add_argument("file", help="the desired-state YAML file")
    p.set_defaults(func=lock)

    p = sub.add_parser("plan", help="what would change, and why (a dry run)")
    _plan_arguments(p)
    p.set_defaults(func=_plan)

    p = sub.add_parser("apply", help="carry the plan out: start and stop model servers")
    _command(p, "apply", "add_arguments", "apply_command")

    p = sub.add_parser("down", help="stop every instance the reconciler started")
    _command(p, "apply", "add_arguments", "down_command", down=True)

    p = sub.add_parser("watch", help="apply whenever the desired file or the machine changes")
    _command(p, "watch", "add_arguments", "watch_command")

    p = sub.add_parser("reset", help="forget a model's crashes: a crash-looping model may start")
    _command(p, "reset", "add_arguments", "reset_command")

    p = sub.add_parser("logs", help="an instance's log")
    _command(p, "logs", "add_arguments", "logs_command")

    p = sub.add_parser("render", help="what apply would launch: argv, environment, unit files")
    _render_arguments(p)
    p.set_defaults(func=_render)

    p = sub.add_parser("status", help="GPUs, what holds their memory, and our instances")
    p.add_argument("--json", action="store_true", help="the snapshot format (for --observed)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--observed", metavar="FILE", help="a snapshot instead of the machine")
    source.add_argument("--profile", metavar="NAME|PATH", help="a hardware profile, idle")
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="the state folder whose journal lists our instances (with --profile or "
        "--observed: the instances `apply` started on the simulated GPUs)",
    )
    p.set_defaults(func=_status)

    p = sub.add_parser("profiles", help="the hardware profiles (bundled and yours) and their GPUs")
    _command(p, "profiles", "add_arguments", "profiles_command")

    p = sub.add_parser("schema", help="print the JSON Schema of the desired file or a profile")
    p.add_argument("kind", nargs="?", choices=("desired", "profile"), default="desired")
    p.set_defaults(func=schema)
    return parser


def _command(
    p: argparse.ArgumentParser, module: str, arguments: str, command: str, **kw: object
) -> None:
    """A command of `reconciler.commands.<module>`: its options now; what the command itself
    needs (psutil, jinja2, subprocess) is imported by the command function when it runs."""
    loaded = importlib.import_module(f"reconciler.commands.{module}")
    getattr(loaded, arguments)(p, **kw)

    def run(args: argparse.Namespace, out: TextIO) -> int:
        func: Command = getattr(loaded, command)
        return func(args, out)

    p.set_defaults(func=run)


def _plan_arguments(p: argparse.ArgumentParser) -> None:
    from reconciler.commands.plan import add_arguments  # noqa: PLC0415

    add_arguments(p)


def _plan(args: argparse.Namespace, out: TextIO) -> int:
    from reconciler.commands.plan import plan_command  # noqa: PLC0415

    return plan_command(args, out)


def _render_arguments(p: argparse.ArgumentParser) -> None:
    from reconciler.commands.render import add_arguments  # noqa: PLC0415

    add_arguments(p)


def _render(args: argparse.Namespace, out: TextIO) -> int:
    # Imported here: rendering loads jinja2.
    from reconciler.commands.render import render_command  # noqa: PLC0415

    return render_command(args, out)


def _status(args: argparse.Namespace, out: TextIO) -> int:
    # Imported here: observing loads psutil and (only when needed) pynvml.
    from reconciler.commands.status import status  # noqa: PLC0415

    return status(args, out)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    try:
        args = build_parser().parse_args(args_list)
        func: Command = args.func
        return func(args, sys.stdout)
    except ReconcileError as exc:
        if debug:
            traceback.print_exc()
        print(str(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
