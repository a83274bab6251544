"""`reconcile apply` with a real llama-server (the CPU build of `make llama-server`) serving a
real model (Gemma 3 270M): start, answer, restart when ctx changes, stop when removed, down."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import Project, alive, free_port, get, wait_gone

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _complete(port: int) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/completion",
        data=json.dumps({"prompt": "The capital of France is", "n_predict": 8}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with NO_PROXY.open(request, timeout=120) as resp:
        content: str = json.load(resp)["content"]
    return content


@pytest.mark.slow
def test_apply_runs_gemma_on_a_real_llama_server(
    project: Project, llama_server: Path, gemma_gguf: Path
) -> None:
    port = free_port()
    gemma = {"name": "gemma", "gguf": str(gemma_gguf), "ctx": 2048, "port": port,
             "gpu_layers": "auto"}  # fmt: skip
    project.write(gemma, llama_server=str(llama_server))
    code, out, _err = project.apply("--health-timeout", "180", profile="cpu-only")
    assert code == 0, out
    assert "+ start gemma" in out
    first = project.pids()["gemma"]
    assert get(port) == (200, '{"status":"ok"}')
    assert _complete(port).strip()
    (entry,) = project.journal()
    assert entry.launch is not None
    assert (entry.launch.ctx, entry.launch.gpu_layers, entry.launch.gguf) == (
        2048,
        0,
        str(gemma_gguf),
    )
    argv = Path(f"/proc/{first}/cmdline").read_bytes().split(b"\0")
    assert argv[argv.index(b"-c") : argv.index(b"-c") + 2] == [b"-c", b"2048"]
    assert b"--fit" in argv

    project.write({**gemma, "ctx": 4096}, llama_server=str(llama_server))
    code, out, _err = project.apply("--health-timeout", "180", profile="cpu-only")
    assert code == 0, out
    assert "spec changed: ctx 2048 -> 4096" in out
    assert wait_gone(first)
    second = project.pids()["gemma"]
    assert second != first
    assert get(port)[0] == 200

    project.write(llama_server=str(llama_server))
    code, out, _err = project.apply(profile="cpu-only")
    assert code == 0, out
    assert wait_gone(second)
    assert project.journal() == ()

    project.write(gemma, llama_server=str(llama_server))
    assert project.apply("--health-timeout", "180", profile="cpu-only")[0] == 0
    third = project.pids()["gemma"]
    code, out, _err = project.run("down", "--yes", "--state-dir", str(project.state))
    assert code == 0, out
    assert wait_gone(third)
    assert not alive(third)
    assert project.journal() == ()
