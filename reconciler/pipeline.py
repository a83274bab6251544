"""The one way from a desired file to a Plan: load -> model facts -> observe -> plan.

Every verb that plans goes through it (`plan`, `check`; `apply` and `watch` next). A
`Pipeline` lives as long as its command, or the watcher: it keeps one `StateReader` (so one
NVML `Observer`, made only when the real machine is observed) and caches what is costly to
read by the identity of the file it came from (path, mtime in ns, size, inode): a GGUF's
facts are read again only when one of its files changes, the lock file likewise. Planning
again every second costs a stat per file, the desired file's parse, an observation and the
placement.

The Plan it returns records in `inputs` digests of everything it was computed from (the
desired file's bytes, the lock file's bytes, each model's facts as used, the tool's version,
the observed machine), so that a saved plan can be found stale (`reconciler.plan.stale`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import reconciler
from reconciler.config.desired import Desired
from reconciler.config.loader import DesiredFile, load_desired
from reconciler.config.yamlfile import read_bytes
from reconciler.errors import ConfigError
from reconciler.estimate.facts import ModelFacts
from reconciler.gguf.reader import ModelFileError, shard_paths
from reconciler.launch import env_digests
from reconciler.lockfile import LockFile, facts_from_file, load_lock, lock_path, resolve_facts
from reconciler.observe import StateReader
from reconciler.plan.model import Plan, PlanInputs
from reconciler.plan.planner import make_plan
from reconciler.state import ObservedState

__all__ = [
    "DesiredInput",
    "ModelInputs",
    "Pipeline",
    "file_identity",
    "model_facts",
    "tool_version",
]

FileIdentity = tuple[tuple[str, int, int, int], ...]


def file_identity(*paths: str | os.PathLike[str]) -> FileIdentity | None:
    """(path, st_mtime_ns, st_size, st_ino) of each file; None when one cannot be stat'ed."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            return None
        out.append((os.fspath(path), st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


@functools.cache
def tool_version() -> str:
    """The installed gpu-reconciler's version; the package's own where it is not installed."""
    try:
        return importlib.metadata.version("gpu-reconciler")
    except importlib.metadata.PackageNotFoundError:
        return getattr(reconciler, "__version__", None) or "unknown"


def _text_path(name: str) -> None:
    """A desired file whose path is not text (bytes that are not UTF-8 in its name or in a
    folder's) cannot be recorded in a plan, nor its models' paths hashed: one line."""
    resolved = str(Path(name).absolute())
    try:
        resolved.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            name,
            0,
            0,
            "",
            f"its path {resolved!a} is not valid UTF-8; rename the file or the folder it is in",
        ) from None


def _desired_digest(raw: bytes, spec: Desired) -> str:
    """The file's bytes and what they resolve to: `${env.X}` is read at load time, so a
    changed variable changes the desired state although the file did not. Values of `env:`
    enter only as the launches' salted digests (never hashed in clear)."""
    resolved = spec.model_dump(mode="json")
    for m, model in zip(resolved.get("models", ()), spec.models, strict=True):
        m["env"] = env_digests(model.env)
    return _sha256_json({"bytes": hashlib.sha256(raw).hexdigest(), "resolved": resolved})


def _sha256_json(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class DesiredInput:
    """A valid desired file and the digest of the very bytes it was validated from, and of
    what they resolved to (see `_desired_digest`)."""

    file: DesiredFile
    sha256: str


@dataclass(frozen=True)
class ModelInputs:
    """Each GGUF model's facts (from its file, else the lock) or why it has none."""

    facts: Mapping[str, ModelFacts]
    problems: Mapping[str, str]
    warnings: tuple[str, ...]
    digests: Mapping[str, str]  # model -> sha256 of its facts' canonical JSON, or its problem
    lock_sha256: str | None  # of the lock file's bytes; None: there is none

    @property
    def sha256(self) -> str:
        """One digest of every model's facts and problems, as the planner gets them."""
        return _sha256_json(dict(self.digests))


class Pipeline:
    """Load -> facts -> observe -> plan, with one observer and file-identity caches."""

    def __init__(
        self,
        *,
        observed: str | None = None,
        profile: str | None = None,
        state_dir: Path | None = None,
        nvml_module: ModuleType | Any | None = None,
        journal: bool = False,
    ) -> None:
        """`journal`: a profile or snapshot is a simulated machine our real processes run
        on (apply, down); without it, an idle one (plan, check)."""
        self.machine = StateReader(
            observed=observed,
            profile=profile,
            state_dir=state_dir,
            nvml_module=nvml_module,
            journal=journal,
        )
        # path -> (identity, facts or the message of why they cannot be read)
        self._ggufs: dict[str, tuple[FileIdentity, ModelFacts | str]] = {}
        self._digests: dict[int, tuple[ModelFacts, str]] = {}  # id(facts) -> (facts, digest)

    def load(self, file: str | os.PathLike[str]) -> DesiredInput:
        """The desired file, validated (`ConfigErrors` otherwise), with its bytes' digest."""
        name = os.fspath(file)
        raw = read_bytes(name, name)
        _text_path(name)
        loaded = load_desired(name, raw=raw)
        return DesiredInput(loaded, _desired_digest(raw, loaded.spec))

    def observe(self) -> ObservedState:
        return self.machine.observe()

    def model_inputs(self, desired: Desired, path: str | os.PathLike[str]) -> ModelInputs:
        """Facts of every llama.cpp model of `desired` (read from `path`): from its GGUF when
        present, else from the lock file beside `path`; a model without is a problem."""
        lock_file = lock_path(path)
        lock, lock_sha = self._lock(lock_file)
        facts: dict[str, ModelFacts] = {}
        problems: dict[str, str] = {}
        warnings: list[str] = []
        digests: dict[str, str] = {}
        used: dict[int, tuple[ModelFacts, str]] = {}
        for m in desired.models:
            if m.backend != "llama.cpp":
                continue
            try:
                resolved = resolve_facts(m, lock, lock_file, self._gguf_facts)
            except ModelFileError as exc:
                problems[m.name] = str(exc)
                digests[m.name] = _sha256_json({"problem": str(exc)})
                continue
            facts[m.name] = resolved.facts
            key = id(resolved.facts)
            if key not in used:
                used[key] = self._digest(resolved.facts)
            digests[m.name] = used[key][1]
            if resolved.warning:
                warnings.append(resolved.warning)
        self._digests = used  # only what this desired file uses: the memo does not grow
        return ModelInputs(facts, problems, tuple(warnings), digests, lock_sha)

    def inputs(self, file: str | os.PathLike[str]) -> PlanInputs:
        """What a plan of `file` would be computed from now, without planning: for comparing
        with a saved plan's inputs."""
        desired = self.load(file)
        models = self.model_inputs(desired.file.spec, desired.file.path)
        return _inputs(desired, models, self.observe().fingerprint())

    def plan(self, desired: DesiredInput, observed: ObservedState | None = None) -> Plan:
        """The plan of `desired` against `observed` (default: this pipeline's machine), with
        its `inputs` filled and the facts' warnings as notes."""
        models = self.model_inputs(desired.file.spec, desired.file.path)
        state = self.observe() if observed is None else observed
        plan = make_plan(desired.file.spec, state, models.facts, models.problems)
        return plan.model_copy(
            update={
                "inputs": _inputs(desired, models, plan.observed),
                "notes": (*plan.notes, *models.warnings),
                "desired_file": str(Path(desired.file.path).resolve()),
            }
        )

    def run(self, file: str | os.PathLike[str]) -> Plan:
        """Load `file`, read the facts, observe, plan."""
        return self.plan(self.load(file))

    def _gguf_facts(self, path: Path) -> ModelFacts:
        """A GGUF's facts, read again only when one of its files (shards) changed identity;
        a file that cannot be read is remembered as such until it changes."""
        key = os.fspath(path)
        identity = file_identity(*shard_paths(path))
        hit = self._ggufs.get(key)
        if identity is not None and hit is not None and hit[0] == identity:
            found = hit[1]
        else:
            try:
                found = facts_from_file(path)
            except ModelFileError as exc:
                found = str(exc)
            if identity is None:
                self._ggufs.pop(key, None)
            else:
                self._ggufs[key] = (identity, found)
        if isinstance(found, str):
            raise ModelFileError(found)  # a new exception each time: no traceback pile-up
        return found

    def _lock(self, path: Path) -> tuple[LockFile | None, str | None]:
        """The lock file and its bytes' sha256; (None, None) where there is none. Parsed
        once per process for each version of the file (`lockfile.load_lock`)."""
        return load_lock(path)

    def _digest(self, facts: ModelFacts) -> tuple[ModelFacts, str]:
        hit = self._digests.get(id(facts))
        if hit is not None and hit[0] is facts:
            return hit
        return facts, _sha256_json(facts.model_dump(mode="json"))


def _inputs(desired: DesiredInput, models: ModelInputs, observed: str) -> PlanInputs:
    return PlanInputs(
        desired=desired.sha256,
        lock=models.lock_sha256,
        facts=models.sha256,
        facts_by_model=dict(models.digests),
        tool_version=tool_version(),
        observed=observed,
    )


def model_facts(
    desired: Desired, file: str | os.PathLike[str]
) -> tuple[dict[str, ModelFacts], dict[str, str], list[str]]:
    """Facts of every GGUF model (from the file, else the lock), problems, warnings: once,
    without a pipeline to keep (tests, scripts)."""
    found = Pipeline().model_inputs(desired, file)
    return dict(found.facts), dict(found.problems), list(found.warnings)
