"""Which program a launch runs: the desired file's `llama_server:`, the environment, PATH;
a missing one is one line saying where we looked and what to set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.apply.programs import resolve_program
from reconciler.config.desired import Desired
from reconciler.errors import ApplyError
from tests.apply.cases import case


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_llama_server_from_the_desired_file_then_the_variable_then_path(tmp_path: Path) -> None:
    launch, _spec = case("llama.cpp")
    chosen = executable(tmp_path / "chosen" / "llama-server")
    by_var = executable(tmp_path / "var" / "llama-server-cuda")
    on_path = executable(tmp_path / "bin" / "llama-server")
    desired = Desired(version=1, llama_server=chosen)
    env = {"PATH": str(on_path.parent), "RECONCILER_LLAMA_SERVER": str(by_var)}
    assert resolve_program(launch, desired, env) == str(chosen)
    assert resolve_program(launch, Desired(version=1), env) == str(by_var)
    assert resolve_program(launch, None, {"PATH": env["PATH"]}) == str(on_path)
    # A name in the variable is looked up on PATH.
    named = {"PATH": str(by_var.parent), "RECONCILER_LLAMA_SERVER": "llama-server-cuda"}
    assert resolve_program(launch, None, named) == str(by_var)


def test_a_missing_llama_server_is_one_line_naming_where_we_looked(tmp_path: Path) -> None:
    launch, _spec = case("llama.cpp")
    with pytest.raises(ApplyError) as excinfo:
        resolve_program(launch, Desired(version=1), {"PATH": str(tmp_path)})
    assert str(excinfo.value) == (
        "chat: llama.cpp's llama-server not found: no `llama_server:` in the desired file or "
        "$RECONCILER_LLAMA_SERVER set, and no llama-server on PATH; install it, or set "
        "`llama_server:` in the desired file or $RECONCILER_LLAMA_SERVER to its path"
    )
    desired = Desired(version=1, llama_server=tmp_path / "nope")
    with pytest.raises(ApplyError, match=r"llama_server: .*/nope \(in the desired file\) is not"):
        resolve_program(launch, desired, {"PATH": str(tmp_path)})
    with pytest.raises(ApplyError, match=r"\$RECONCILER_LLAMA_SERVER=/x/y is not an executable"):
        resolve_program(launch, None, {"PATH": "", "RECONCILER_LLAMA_SERVER": "/x/y"})


@pytest.mark.parametrize(
    ("backend", "variable"), [("vllm", "RECONCILER_VLLM"), ("ollama", "RECONCILER_OLLAMA")]
)
def test_vllm_and_ollama_from_their_variable_or_path(
    tmp_path: Path, backend: str, variable: str
) -> None:
    launch, _spec = case(backend)
    on_path = executable(tmp_path / "bin" / launch.program)
    other = executable(tmp_path / "other" / launch.program)
    assert resolve_program(launch, None, {"PATH": str(on_path.parent)}) == str(on_path)
    env = {"PATH": str(on_path.parent), variable: str(other)}
    assert resolve_program(launch, None, env) == str(other)
    with pytest.raises(ApplyError, match=rf"no \${variable} set, and no {launch.program} on PATH"):
        resolve_program(launch, None, {"PATH": ""})


def test_a_command_runs_its_argv0_as_given_or_found_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool = executable(tmp_path / "bin" / "my-server")
    launch, _spec = case("command")
    assert resolve_program(launch, None, {"PATH": str(tool.parent)}) == str(tool)
    absolute = launch.model_copy(update={"argv": (str(tool), "--x")})
    assert resolve_program(absolute, None, {"PATH": ""}) == str(tool)
    monkeypatch.chdir(tmp_path)
    relative = launch.model_copy(update={"argv": (os.path.join("bin", "my-server"),)})
    assert resolve_program(relative, None, {"PATH": ""}) == str(tool)
    with pytest.raises(ApplyError, match="argv\\[0\\] 'my-server' is not a program on PATH"):
        resolve_program(launch, None, {"PATH": ""})
    gone = launch.model_copy(update={"argv": ("/no/such/server",)})
    with pytest.raises(ApplyError, match="argv\\[0\\] /no/such/server is not an executable file"):
        resolve_program(gone, None, {"PATH": ""})
