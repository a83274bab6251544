"""The pieces together with a real llama-server (the CPU build of `make llama-server`) and a
real model (Gemma 3 270M), without the applier: start it as apply would, wait through
health.py until /health is 200, ask it for a completion, stop it with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from reconciler.apply.health import Probe, wait_ready
from reconciler.apply.units import LABEL, Rendered
from tests.fakes.server import free_port

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@pytest.mark.slow
def test_a_real_llama_server_gets_healthy_completes_and_stops(
    llama_server: Path, gemma_gguf: Path, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = (str(llama_server), "-m", str(gemma_gguf), "--host", "127.0.0.1", "--port", str(port),
            "-c", "2048", "-np", "1", "--fit", "off")  # fmt: skip
    rendered = Rendered(
        model="gemma", variant="gemma", backend="llama.cpp", unit="reconciler-gemma",
        argv=argv, env={LABEL: "gemma"}, health_url=f"{url}/health",
    )  # fmt: skip
    log = tmp_path / "llama-server.log"
    states: list[str] = []
    with open(log, "w") as out:
        proc = subprocess.Popen(
            rendered.argv,
            env={**os.environ, **rendered.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        seen: Probe = wait_ready(
            rendered,
            alive=lambda: proc.poll() is None,
            timeout_s=180,
            on_progress=lambda t, p: states.append(p.state),
        )
        assert seen.ready, f"{seen.detail}\n{_tail(log)}"
        sys.stderr.write(f"llama-server healthy after {seen.elapsed_s:.2f} s ({states})\n")

        request = urllib.request.Request(
            f"{url}/completion",
            data=json.dumps({"prompt": "The capital of France is", "n_predict": 8}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with NO_PROXY.open(request, timeout=60) as resp:
            answer = json.load(resp)
        assert isinstance(answer["content"], str)
        assert answer["content"].strip(), answer
        assert answer["tokens_predicted"] >= 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"llama-server ignored SIGTERM for 30 s\n{_tail(log)}")
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{_tail(log)}"
