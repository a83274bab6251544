"""Loading desired files and hardware profiles: every problem in one pass, each located.

`load_desired` returns a valid `Desired` (with where each value came from) or raises
`ConfigErrors` listing everything wrong; it never raises anything else for any file content.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import os
import shlex
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from reconciler.config.desired import Desired
from reconciler.config.limits import MAX_DESIRED_VALUES, desired_limits
from reconciler.config.messages import translate
from reconciler.config.profile import Profile
from reconciler.config.rules import Problem, desired_problems, hardware_problems
from reconciler.config.scalars import escaped
from reconciler.config.source import Source, suggest
from reconciler.config.yamlfile import decode_text, parse_yaml, read_text, read_yaml
from reconciler.errors import ConfigError, ConfigErrors

__all__ = [
    "DesiredFile",
    "InvalidDesired",
    "Loaded",
    "ProfileFile",
    "bundled_profiles",
    "check_hardware",
    "load_desired",
    "load_profile",
    "parse_desired",
    "profile_dirs",
    "profile_names",
]

T = TypeVar("T", bound=BaseModel)

#: A profile's size: the YAML reader takes seconds per MiB, and a machine fits in far less.
MAX_PROFILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """A valid spec and the source it came from (for `file:line:col` in later messages)."""

    spec: T
    source: Source
    path: Path

    def error(self, loc: tuple[str | int, ...], message: str) -> ConfigError:
        return self.source.error(loc, message)


DesiredFile = Loaded[Desired]


@dataclass(frozen=True)
class ProfileFile(Loaded[Profile]):
    name: str = ""


def _validate(
    cls: type[T], source: Source, context: Mapping[str, Any], extra: Sequence[Problem] = ()
) -> T:
    errors = list(source.errors)
    later: list[ConfigError] = []
    spec: T | None = None
    if source.data is None:
        errors.append(ConfigError(source.file, 1, 1, "", "the file is empty; see the examples"))
    else:
        try:
            spec = cls.model_validate(source.data, context=dict(context))
        except ValidationError as exc:
            later += translate(exc, source, cls)
    later += [source.error(loc, message) for loc, message in extra]
    # A value the reader refused (a 5000-digit number, a lone surrogate) is reported once,
    # by the reader, not again as the wrong type.
    refused = {e.path for e in source.errors if e.path}
    errors += [e for e in later if e.path not in refused]
    if errors or spec is None:
        raise ConfigErrors(errors)
    return spec


def _without_extensions(source: Source) -> Source:
    """The file without its `x-` top-level keys, which hold YAML anchors (as in Compose
    files) and are otherwise ignored."""
    if not isinstance(source.data, dict):
        return source
    data = {k: v for k, v in source.data.items() if not k.startswith("x-")}
    return dataclasses.replace(source, data=data)


class InvalidDesired(ConfigErrors):
    """A desired file that was read whole but does not validate; `source` is what was read,
    so that checks of the same pass (the GPUs a profile lacks) need not read it again."""

    def __init__(self, errors: Sequence[ConfigError], source: Source) -> None:
        super().__init__(errors)
        self.source = source


def _desired(source: Source, base_dir: Path, path: Path) -> DesiredFile:
    source = _without_extensions(source)
    over = desired_limits(source.data)
    if over:  # refused before any work that grows with the file
        raise ConfigErrors([*source.errors, *(source.error(loc, m) for loc, m in over)])
    context = {"base_dir": base_dir}
    try:
        spec = _validate(Desired, source, context, desired_problems(source.data, context))
    except ConfigErrors as exc:
        raise InvalidDesired(exc.errors, source) from None
    return Loaded(spec, source, path)


def parse_desired(
    text: str, file: str, base_dir: Path, environ: Mapping[str, str] | None = None
) -> DesiredFile:
    """Validate desired-state YAML text; relative paths resolve against `base_dir`."""
    env = dict(os.environ if environ is None else environ)
    source = parse_yaml(text, file, environ=env, max_values=MAX_DESIRED_VALUES)
    return _desired(source, base_dir, base_dir / Path(file).name)


def load_desired(path: str | os.PathLike[str], *, raw: bytes | None = None) -> DesiredFile:
    """Read and validate a desired-state file; `raw`: its bytes, already read (by a caller
    that digests them, so that what is validated is what was digested)."""
    file = os.fspath(path)
    text = read_text(file, file) if raw is None else decode_text(raw, file)
    source = parse_yaml(text, file, max_values=MAX_DESIRED_VALUES)
    return _desired(source, Path(file).resolve().parent, Path(file))


def check_hardware(desired: DesiredFile, profile: ProfileFile) -> list[ConfigError]:
    """GPUs the desired file names (in `gpus` and `pin`) that the profile's machine lacks."""
    gpus = profile.spec.gpus
    context = {"base_dir": desired.path.resolve().parent}
    problems = hardware_problems(
        desired.source.data,
        context,
        len(gpus),
        [g.uuid for g in gpus],
        f"profile {profile.name}",
    )
    return [desired.source.error(loc, message) for loc, message in problems]


def profile_dirs() -> list[Path]:
    """Where profile names are looked up: $RECONCILER_PROFILES, then the bundled profiles. A
    folder named there that does not exist is warned about (once), then left out."""
    named = [Path(p) for p in os.environ.get("RECONCILER_PROFILES", "").split(os.pathsep) if p]
    dirs = [d for d in named if d.is_dir()]
    for missing in sorted(set(named) - set(dirs)):
        _warn_missing(missing)
    return [*dirs, bundled_profiles()]


@functools.cache
def _warn_missing(folder: Path) -> None:
    what = "is not a folder" if folder.exists() else "does not exist"
    logging.getLogger(__name__).warning(
        "warning: $RECONCILER_PROFILES names %s, which %s; no profile is read from it (set it "
        "to folders of profile YAML files, separated by %r)",
        folder,
        what,
        os.pathsep,
    )


def bundled_profiles() -> Path:
    """The profiles shipped with the package: `reconciler/profiles` in an installed wheel,
    the top-level `profiles/` folder in a source checkout (and an editable install)."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "profiles"
    return installed if installed.is_dir() else package.parent / "profiles"


def profile_names() -> list[str]:
    names = {p.stem for d in profile_dirs() for p in d.glob("*.yaml")}
    return sorted(names)


def load_profile(name_or_path: str) -> ProfileFile:
    """A profile by path, or by name: from $RECONCILER_PROFILES, then the bundled ones
    (`profiles/`). Its problems say they are about a profile and that `reconcile profiles`
    checks it again."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") or os.sep in name_or_path):
        found = [d / f"{name_or_path}.yaml" for d in profile_dirs()]
        existing = [p for p in found if _is_file(p, name_or_path)]
        if not existing:
            # The name on the command line is what to fix: the footer names no command (the
            # default), and the message says how to see the names there are.
            hint = suggest(name_or_path, profile_names())
            message = f"no such hardware profile (run `reconcile profiles` to list them){hint}"
            error = ConfigError(name_or_path, 0, 0, "", message)
            raise ConfigErrors([error], about="hardware profile")
        path = existing[0]
    try:
        return _profile_file(path)
    except ConfigErrors as exc:
        rerun = f"reconcile profiles {shlex.quote(name_or_path)}"
        raise ConfigErrors(exc.errors, rerun=rerun, about="hardware profile") from None


def _is_file(path: Path, shown: str) -> bool:
    """Whether `path` is a regular file (links followed); False where nothing is there. A path
    the system refuses (too long, a link loop, a folder we may not search) is one problem
    naming `shown`, the profile as given: `Path.is_file` raises for those."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return False
    except (OSError, ValueError) as exc:
        error = ConfigError(escaped(shown), 0, 0, "", _refused(exc))
        raise ConfigErrors([error], about="hardware profile") from None
    return stat.S_ISREG(mode)


def _refused(exc: OSError | ValueError) -> str:
    if isinstance(exc, ValueError):
        return f"cannot be a file name ({exc}); check the profile's name or path"
    if exc.errno == errno.ENAMETOOLONG:
        return "is too long for a file name on this system; check the profile's name or path"
    if exc.errno == errno.ELOOP:
        return "is a symbolic link loop (or a chain of too many links); fix the link"
    return f"cannot be read: {exc.strerror or exc}"


def _profile_file(path: Path) -> ProfileFile:
    size = path.stat().st_size if _is_file(path, str(path)) else 0
    if size > MAX_PROFILE_BYTES:
        message = (
            f"is {size} bytes; a profile is at most {MAX_PROFILE_BYTES // 1024} KiB (the bundled "
            "ones are under 1 KiB); is this the right file?"
        )
        raise ConfigErrors([ConfigError(str(path), 0, 0, "", message)])
    source = read_yaml(path, max_values=MAX_DESIRED_VALUES)
    spec = _validate(Profile, source, {"base_dir": path.resolve().parent})
    problems = [source.error(loc, message) for loc, message in spec.problems()]
    if problems:
        raise ConfigErrors(problems)
    return ProfileFile(spec, source, path, name=path.stem)
