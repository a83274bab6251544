"""The command line: the only module that prints to the terminal or decides the exit code.

Exit codes: 0 success (no changes), 1 error, 2 changes pending (plan --detailed-exitcode),
3 the model does not fit anywhere (fit).
Any error a user can cause is printed as one or more plain lines; `--debug` (before or after
the command) adds a traceback.

Start-up: each command's module (and what it imports: pydantic models, ruamel, jinja2,
psutil) is loaded only when that command runs, or its `--help` is asked for; `reconcile plan`
never loads the applier.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import errno
import importlib
import io
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn, TextIO

from reconciler import __version__
from reconciler.errors import ReconcileError

__all__ = ["main"]

Command = Callable[[argparse.Namespace, TextIO], int]
Arguments = Callable[[argparse.ArgumentParser], None]

#: The file every command that reads a desired file reads when none is given.
DEFAULT_FILE = "desired.yaml"

#: Errors writing our own output (a full disk, a quota, a device error): one line, exit 1.
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


class UsageError(ReconcileError):
    """The command line itself is wrong."""


class _Parser(argparse.ArgumentParser):
    #: A command's options, added when the command is chosen (or its help is shown).
    deferred: Arguments | None = None

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}; see `{self.prog} --help`")

    def complete(self) -> None:
        deferred, self.deferred = self.deferred, None
        if deferred is not None:
            deferred(self)


class _Commands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Sub-commands whose options are added only once one is chosen, and that each take
    `--debug` too (`reconcile plan X --debug` works as `reconcile --debug plan X`)."""

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        p = super().add_parser(name, **kwargs)
        p.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        return p

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        name = values[0] if isinstance(values, list | tuple) and values else None
        chosen = self._name_parser_map.get(name) if isinstance(name, str) else None
        if isinstance(chosen, _Parser):
            chosen.complete()
        super().__call__(parser, namespace, values, option_string)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="reconcile",
        description="Keep a GPU host's local LLMs in the state declared in desired.yaml.",
    )
    parser.register("action", "parsers", _Commands)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("check", help="validate desired files, optionally against profiles")
    p.add_argument(
        "files",
        nargs="*",
        default=[DEFAULT_FILE],
        metavar="FILE",
        help=f"desired-state YAML files (default: {DEFAULT_FILE}, as for plan and apply)",
    )
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
    _runs(p, "check", "check")

    p = sub.add_parser("estimate", help="memory llama-server needs for a GGUF, per device")
    _command(p, "estimate", "add_arguments", "estimate_command")

    p = sub.add_parser("lock", help="write desired.lock.yaml from the GGUF files present")
    p.add_argument("file", help="the desired-state YAML file")
    _runs(p, "lock", "lock")

    p = sub.add_parser(
        "plan",
        help="what would change, and why (a dry run)",
        description="Compare the desired file with the machine (or a profile, or a snapshot) "
        "and print what would change, and why, like `terraform plan`. Nothing is changed; "
        "`reconcile apply` carries a plan out.",
    )
    _command(p, "plan", "add_arguments", "plan_command")

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
    _command(p, "render", "add_arguments", "render_command")

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
    _runs(p, "status", "status")

    p = sub.add_parser("fit", help="would a GGUF model fit now, beside what runs? (what-if)")
    _command(p, "fit", "add_arguments", "fit_command")

    p = sub.add_parser("profiles", help="the hardware profiles (bundled and yours) and their GPUs")
    _command(p, "profiles", "add_arguments", "profiles_command")

    p = sub.add_parser("schema", help="print the JSON Schema of the desired file or a profile")
    p.add_argument("kind", nargs="?", choices=("desired", "profile"), default="desired")
    _runs(p, "schema", "schema")
    return parser


def _runs(p: argparse.ArgumentParser, module: str, command: str) -> None:
    """`p` runs `reconciler.commands.<module>.<command>`, imported when it runs."""

    def run(args: argparse.Namespace, out: TextIO) -> int:
        loaded = importlib.import_module(f"reconciler.commands.{module}")
        func: Command = getattr(loaded, command)
        return func(args, out)

    p.set_defaults(func=run)


def _command(
    p: argparse.ArgumentParser, module: str, arguments: str, command: str, **kw: object
) -> None:
    """A command of `reconciler.commands.<module>`: its options come from the module's
    `arguments` function, added (and the module imported) only when the command is chosen."""

    def add(parser: argparse.ArgumentParser) -> None:
        loaded = importlib.import_module(f"reconciler.commands.{module}")
        getattr(loaded, arguments)(parser, **kw)

    if isinstance(p, _Parser):
        p.deferred = add
    else:
        add(p)
    _runs(p, module, command)


def _lenient(exc: UnicodeError) -> tuple[str | bytes, int]:
    """An encoding error handler: a file name's undecodable bytes (surrogate escapes) are
    written back as they were; anything else the encoding cannot carry (a lone surrogate, a
    character outside ASCII on an ASCII terminal) as a backslash escape."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    try:
        return codecs.lookup_error("surrogateescape")(exc)
    except UnicodeEncodeError:
        return codecs.backslashreplace_errors(exc)


codecs.register_error("reconciler.lenient", _lenient)


@contextlib.contextmanager
def _lenient_output() -> Iterator[None]:
    """Our output never fails on text the terminal's encoding cannot carry: on stdout as
    `_lenient` writes it, on stderr (messages) as backslash escapes."""
    changed = []
    for stream, errors in ((sys.stdout, "reconciler.lenient"), (sys.stderr, "backslashreplace")):
        if isinstance(stream, io.TextIOWrapper) and stream.errors in ("strict", "surrogateescape"):
            before = stream.errors
            with contextlib.suppress(OSError, ValueError):
                stream.reconfigure(errors=errors)
                changed.append((stream, before))
    try:
        yield
    finally:
        for stream, before in changed:
            with contextlib.suppress(OSError, ValueError):
                stream.reconfigure(errors=before)


def _silence_stdout() -> None:
    """After a broken pipe (`reconcile plan | head -1`): send what is left to /dev/null, so
    that Python's flush at exit does not report the pipe again."""
    stream = sys.__stdout__
    if stream is None or sys.stdout is not stream:
        return
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    with _lenient_output():
        try:
            args = build_parser().parse_args(args_list)
            func: Command = args.func
            code = func(args, sys.stdout)
            sys.stdout.flush()  # a full disk or a closed pipe is reported here, not at exit
        except ReconcileError as exc:
            if debug:
                traceback.print_exc()
            print(str(exc), file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            _silence_stdout()
            return 1
        except OSError as exc:
            if exc.errno not in _OUTPUT_ERRNOS or exc.filename is not None:
                raise
            if debug:
                traceback.print_exc()
            _silence_stdout()
            print(
                f"reconcile: cannot write the output: {exc.strerror}; "
                "free some space or write it elsewhere",
                file=sys.stderr,
            )
            return 1
        return code
