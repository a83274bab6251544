"""`reconcile lock desired.yaml`: write desired.lock.yaml from the GGUF files present."""

from __future__ import annotations

import argparse
from typing import TextIO

from reconciler.config.loader import load_desired
from reconciler.errors import ConfigErrors
from reconciler.lockfile import (
    LockFile,
    MissingLockEntry,
    lock_path,
    make_lock,
    read_lock,
    write_lock,
)

__all__ = ["lock"]


def lock(args: argparse.Namespace, out: TextIO) -> int:
    """A broken old lock is replaced where every GGUF is present (its entries are needed only
    for models whose file is absent here); otherwise its problems are reported. A GGUF that is
    present but cannot be read is reported as itself, whatever the old lock's state."""
    desired = load_desired(args.file)
    path = lock_path(args.file)
    old: LockFile | None = None
    broken: ConfigErrors | None = None
    try:
        old = read_lock(path)
    except ConfigErrors as exc:
        broken = exc
    try:
        new, notes = make_lock(desired.spec, old)
    except MissingLockEntry:
        if broken is not None:
            raise broken from None  # its entries were needed: the file absent here is why
        raise
    write_lock(new, path)
    if broken is not None:
        problem = broken.errors[0].render()
        notes.insert(0, f"replaced a lock file that could not be read ({problem})")
    for note in notes:
        out.write(f"  {note}\n")
    count = len(new.models)
    out.write(f"wrote {path}: {count} model{'s' if count != 1 else ''}\n")
    return 0
