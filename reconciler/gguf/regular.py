"""Opening a file that must be a regular file (a GGUF, a lock file), never blocking on it.

`open()` on a named pipe waits for a writer forever, and `/dev/zero` reads zeros forever: a
GGUF or a lock file is refused unless it is a regular file. The kind is checked with `stat`
before opening, and again with `fstat` on what was opened (opened with O_NONBLOCK, so a pipe
swapped in between cannot block either). Each problem comes back as `NotRegular` with one
phrase (`reason`) the caller puts after the file's name, in its own error type.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

__all__ = ["NotRegular", "open_regular", "present"]

_KINDS = (
    (stat.S_ISDIR, "is a directory"),
    (stat.S_ISFIFO, "is a named pipe"),
    (stat.S_ISCHR, "is a character device"),
    (stat.S_ISBLK, "is a block device"),
    (stat.S_ISSOCK, "is a socket"),
)


class NotRegular(Exception):
    """A file that cannot be opened as a regular file; `reason` says why, in one phrase."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def present(path: str | os.PathLike[str]) -> bool:
    """Whether something is at `path` to read or to report on: False where nothing is (no
    such file, a folder on the way is missing, or a symbolic link to nothing: CI checkouts keep
    links into a model folder whose weights are absent, and the lock entry stands in). A
    symbolic link loop, a directory or a file we may not read is present: reading it says what
    is wrong."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except (OSError, ValueError):
        return True
    return True


def _reason(exc: OSError, path: str | os.PathLike[str]) -> str:
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(path):
            return f"is a symbolic link to {os.readlink(path)!s}, which does not exist"
        return "no such file; check the path"
    if exc.errno == errno.ELOOP:
        return "is a symbolic link loop (or a chain of too many links); fix the link"
    if isinstance(exc, PermissionError):
        return "permission denied; check the file's permissions"
    if exc.errno == errno.ENAMETOOLONG:
        return "the path is too long for this system"
    if isinstance(exc, NotADirectoryError):
        return "a folder on the path is a file; check the path"
    return f"cannot be read: {exc.strerror or exc}"


def _kind(mode: int) -> str | None:
    return (
        next((what for test, what in _KINDS if test(mode)), None)
        if not stat.S_ISREG(mode)
        else None
    )


def open_regular(path: str | os.PathLike[str]) -> tuple[BinaryIO, os.stat_result]:
    """The file at `path` opened for reading in binary, and its `fstat`; `NotRegular` for
    anything that is not a readable regular file."""
    try:
        kind = _kind(os.stat(path).st_mode)
        if kind is not None:
            raise NotRegular(f"{kind}, not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise NotRegular(_reason(exc, path)) from None
    except ValueError:  # a NUL byte in the path
        raise NotRegular("the path contains a NUL byte") from None
    st = os.fstat(fd)
    kind = _kind(st.st_mode)
    if kind is not None:
        os.close(fd)
        raise NotRegular(f"{kind}, not a regular file")
    return os.fdopen(fd, "rb"), st
