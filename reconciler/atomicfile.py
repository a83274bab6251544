"""Writing a file whole or not at all: the lock file, a saved plan, the journal, the crash
record and systemd units all go through `write_atomically`, so that a reader (another
command, systemd, an editor) never sees half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: Path, text: str, mode: int | None = None) -> None:
    """`text` (UTF-8) to `path` through a temporary file beside it, flushed to disk and then
    renamed over it. `mode`: its permissions (None: those of any new file, 0666 less the
    umask; the temporary file is 0600 until then). An `OSError` is the caller's to word; the
    temporary file never stays behind."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _new_file_mode() if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
