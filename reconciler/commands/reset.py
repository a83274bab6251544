"""`reconcile reset MODEL`: forget a model's crashes, so that a crash-looping model may start.

The record (`crashes.json` in the state folder) is changed under the state folder's lock; the
next `apply` (or the watcher's next cycle) starts the model again.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from reconciler.errors import ApplyError

__all__ = ["add_arguments", "reset_command"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="the model whose crash record to clear (as in the desired file)")
    p.add_argument("--state-dir", metavar="DIR", help="the state folder (journal, crash record)")
    p.add_argument(
        "--lock-timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds to wait for an apply or a watcher to finish (default 600)",
    )


def reset_command(args: argparse.Namespace, out: TextIO) -> int:
    from reconciler.apply.crashes import CrashBook  # noqa: PLC0415
    from reconciler.apply.lock import state_lock  # noqa: PLC0415
    from reconciler.commands.apply import _say, _state_dir  # noqa: PLC0415

    state_dir = _state_dir(args)
    book = CrashBook(state_dir)

    def unknown(known: list[str]) -> ApplyError:
        return ApplyError(
            f"{args.model}: no crash recorded for it in {book.path}; models with crashes: "
            + (", ".join(known) or "none")
        )

    if not book.path.exists():  # nothing to clear: the state folder is not even created
        raise unknown([])
    with state_lock(state_dir, timeout_s=args.lock_timeout, on_wait=lambda m: _say(out, m)):
        known = sorted(book.read().models)
        if not book.reset(args.model):
            raise unknown(known)
    out.write(
        f"Reset {args.model}: its crashes are forgotten; the next apply (or the watcher) "
        "starts it again.\n"
    )
    return 0
