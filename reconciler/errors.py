"""The error types of the reconciler: one type per kind of failure.

Every error a user can cause is a `ReconcileError`; the CLI prints its text (no traceback) and
exits 1. Each message says what went wrong, where, and what to try.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ApplyError",
    "ConfigError",
    "ConfigErrors",
    "ObservationError",
    "ReconcileError",
]


class ReconcileError(Exception):
    """Base of every failure a user can cause or act on."""

    #: A temporary error may go away by itself (a GPU busy, a process still starting);
    #: a permanent one needs a person to change something.
    temporary: bool = False


class ConfigError(ReconcileError):
    """One problem in a configuration file, located as precisely as we can.

    `line` and `col` are 1-based; 0 means "unknown" (the whole file). `path` is the dotted path
    of the key, e.g. ``models[2].ctx``; empty for problems of the file as a whole.
    """

    def __init__(self, file: str, line: int, col: int, path: str, message: str) -> None:
        self.file = file
        self.line = line
        self.col = col
        self.path = path
        self.message = message
        super().__init__(self.render())

    def render(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.col}"
        if self.path:
            return f"{where}: {self.path}: {self.message}"
        return f"{where}: {self.message}"

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line, self.col, self.path)


class ConfigErrors(ReconcileError):
    """Every problem found in one pass over a configuration file.

    `rerun` is the command the footer tells the user to run again once the file is fixed: a
    desired file is checked by `reconcile check`, a snapshot or a profile is not. `about` says
    what kind of file it is where that is not a desired file ("snapshot", "hardware profile").
    """

    def __init__(
        self, errors: Iterable[ConfigError], rerun: str = "reconcile check", about: str = ""
    ) -> None:
        self.errors = tuple(sorted(errors, key=ConfigError.sort_key))
        self.rerun = rerun
        self.about = about
        if not self.errors:
            raise ValueError("ConfigErrors needs at least one error")
        super().__init__(self.render())

    def render(self) -> str:
        lines = [e.render() for e in self.errors]
        files = sorted({e.file for e in self.errors})
        count = len(self.errors)
        noun = "problem" if count == 1 else "problems"
        where = ", ".join(files)
        if self.about:
            where = f"{self.about} {where}"
        lines.append(f"{count} {noun} in {where}; fix and run `{self.rerun}` again.")
        return "\n".join(lines)


class ObservationError(ReconcileError):
    """The machine could not be observed (NVML, the process table, a snapshot file)."""


class ApplyError(ReconcileError):
    """A change to the machine failed (a unit did not start, a health check timed out)."""
