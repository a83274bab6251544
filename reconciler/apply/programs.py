"""Which program a launch runs: the path of llama-server, vllm, ollama or a command's argv[0].

Looked up, in order:

- llama.cpp: `llama_server:` in the desired file, `$RECONCILER_LLAMA_SERVER`, `llama-server`
  on PATH;
- vllm: `$RECONCILER_VLLM`, `vllm` on PATH;
- ollama: `$RECONCILER_OLLAMA`, `ollama` on PATH;
- command: argv[0] as given: a path (absolute, or relative to the current folder), or a name
  found on PATH.

The first place that is set decides: a `llama_server:` that names no executable file is an
error, not a reason to look further (the file asked for that program). A program found by
name is returned as an absolute path, so a unit runs what was found here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from reconciler.config.desired import Desired
from reconciler.errors import ApplyError
from reconciler.launch import Launch

__all__ = ["PROGRAM_VARIABLES", "resolve_program"]

PROGRAM_VARIABLES = {
    "llama.cpp": "RECONCILER_LLAMA_SERVER",
    "vllm": "RECONCILER_VLLM",
    "ollama": "RECONCILER_OLLAMA",
}
_WHAT = {"llama.cpp": "llama.cpp's llama-server", "vllm": "vLLM", "ollama": "Ollama"}


def _executable(path: str | os.PathLike[str]) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _which(name: str, path: str) -> str | None:
    found = shutil.which(name, path=path)
    return os.path.abspath(found) if found is not None else None


def resolve_program(
    launch: Launch, desired: Desired | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """The absolute path of the program `launch` runs; `ApplyError` (one line: where it
    looked, what to set) when there is none. `environ` defaults to this process's."""
    env = os.environ if environ is None else environ
    path = env.get("PATH", os.defpath)
    backend = launch.backend
    if backend == "command":
        return _command(launch, path)
    if backend == "llama.cpp" and desired is not None and desired.llama_server is not None:
        chosen = desired.llama_server
        if _executable(chosen):
            return os.path.abspath(chosen)
        raise ApplyError(
            f"{launch.model}: llama_server: {chosen} (in the desired file) is not an executable "
            "file; fix the path, or remove the key to use $RECONCILER_LLAMA_SERVER or PATH"
        )
    variable = PROGRAM_VARIABLES[backend]
    value = env.get(variable)
    if value:
        found = _which(value, path)
        if found is not None:
            return found
        raise ApplyError(
            f"{launch.model}: ${variable}={value} is not an executable file, nor a program on "
            f"PATH; fix it, or unset it to look for {launch.program} on PATH"
        )
    found = _which(launch.program, path)
    if found is not None:
        return found
    places = ["`llama_server:` in the desired file"] if backend == "llama.cpp" else []
    settings = " or ".join([*places, f"${variable}"])
    raise ApplyError(
        f"{launch.model}: {_WHAT[backend]} not found: no {settings} set, and no "
        f"{launch.program} on PATH; install it, or set {settings} to its path"
    )


def _command(launch: Launch, path: str) -> str:
    name = launch.argv[0] if launch.argv else launch.program
    if os.sep in name:
        if _executable(name):
            return os.path.abspath(name)
        where = Path(name) if os.path.isabs(name) else Path.cwd() / name
        raise ApplyError(
            f"{launch.model}: argv[0] {where} is not an executable file; fix `argv` in the "
            "desired file (an absolute path is safest)"
        )
    found = _which(name, path)
    if found is not None:
        return found
    raise ApplyError(
        f"{launch.model}: argv[0] {name!r} is not a program on PATH; give its absolute path "
        "in `argv`, or add its folder to PATH"
    )
