"""`reconcile lock desired.yaml`: write desired.lock.yaml from the GGUF files present."""

from __future__ import annotations

import argparse
from typing import TextIO

from reconciler.config.loader import load_desired
from reconciler.lockfile import lock_path, make_lock, read_lock, write_lock

__all__ = ["lock"]


def lock(args: argparse.Namespace, out: TextIO) -> int:
    desired = load_desired(args.file)
    path = lock_path(args.file)
    new, notes = make_lock(desired.spec, read_lock(path))
    write_lock(new, path)
    for note in notes:
        out.write(f"  {note}\n")
    count = len(new.models)
    out.write(f"wrote {path}: {count} model{'s' if count != 1 else ''}\n")
    return 0
