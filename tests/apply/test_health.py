"""Readiness per backend, against fakes that answer as llama-server, vLLM and Ollama do, and
the polling loop on a fake clock."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from reconciler.apply.health import SETTLE_S, Probe, probe, wait_ready
from reconciler.apply.units import Rendered
from tests.conftest import ROOT
from tests.fakes.server import MIB, FakeServer, free_port

Start = Callable[..., FakeServer]


def unit(backend: Any = "llama.cpp", **fields: Any) -> Rendered:
    return Rendered(
        model="chat", variant="chat", backend=backend, unit="reconciler-chat",
        argv=("/bin/true",), env={}, **fields,
    )  # fmt: skip


def ollama_unit(server_url: str, model: str = "gemma3", up: str = "/") -> Rendered:
    load = {
        "model": model,
        "prompt": "",
        "keep_alive": -1,
        "options": {"num_ctx": 2048, "num_gpu": 99},
    }
    return unit(
        "ollama", health_url=f"{server_url}{up}", ready_url=f"{server_url}/api/ps", load=load
    )


def wait(rendered: Rendered, timeout_s: float = 5.0, **kwargs: Any) -> Probe:
    return wait_ready(rendered, alive=lambda: True, timeout_s=timeout_s, interval_s=0.02, **kwargs)


# ------------------------------------------------------------------------------- llama.cpp


def test_llama_ready(fake_server: Start) -> None:
    server = fake_server("llama")
    seen = probe(unit(health_url=f"{server.url}/health"))
    assert seen == Probe("ready", f"{server.url}/health: HTTP 200")


def test_llama_loading_then_ready(fake_server: Start) -> None:
    server = fake_server("llama", loading=3)
    progress: list[tuple[float, Probe]] = []
    seen = wait(
        unit(health_url=f"{server.url}/health"), on_progress=lambda t, p: progress.append((t, p))
    )
    assert seen.ready
    assert [p.state for _, p in progress] == ["loading"] * 3
    assert progress[0][1].detail == f"{server.url}/health: HTTP 503: Loading model"
    assert [r.path for r in server.requests] == ["/health"] * 4
    assert seen.elapsed_s >= progress[-1][0]


def test_down_when_nothing_listens() -> None:
    url = f"http://127.0.0.1:{free_port()}/health"
    assert probe(unit(health_url=url)) == Probe(
        "down", f"{url}: connection refused (not listening yet)"
    )


def test_wrong_status_is_said_with_its_first_line(fake_server: Start) -> None:
    server = fake_server("llama", health_status=500)
    seen = probe(unit(health_url=f"{server.url}/health"))
    assert seen == Probe("unexpected", f"{server.url}/health: HTTP 500: fake failure")
    missing = probe(unit(health_url=f"{server.url}/healthz"))
    assert missing.state == "unexpected"
    assert missing.detail == f"{server.url}/healthz: HTTP 404: File Not Found: /healthz"


def test_timeout_returns_the_last_probe(fake_server: Start) -> None:
    server = fake_server("llama", loading=10**6)
    seen = wait(unit(health_url=f"{server.url}/health"), timeout_s=0.3)
    assert seen.state == "loading"
    assert seen.detail.startswith("reconciler-chat: not ready after 0.3 s (last: ")
    assert "HTTP 503: Loading model" in seen.detail
    assert seen.elapsed_s == pytest.approx(0.3, abs=0.01)


def test_a_process_that_dies_while_loading() -> None:
    port = free_port()
    argv = [sys.executable, "-m", "tests.fakes.server", "--kind", "llama", "--port", str(port),
            "--loading", "1000000", "--crash-after", "0.5"]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        rendered = unit(health_url=f"http://127.0.0.1:{port}/health")
        seen = wait_ready(
            rendered, alive=lambda: proc.poll() is None, timeout_s=30, interval_s=0.05
        )
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 3
    assert seen.state == "exited"
    assert seen.detail.startswith("reconciler-chat: the process exited after ")
    assert seen.elapsed_s < 30


# ------------------------------------------------------------------------------------ vLLM


def test_vllm_down_until_it_listens_then_ready(fake_server: Start) -> None:
    server = fake_server("vllm", delay=0.4, model="Qwen/Qwen2.5-0.5B")
    rendered = unit("vllm", health_url=f"{server.url}/health")
    assert probe(rendered).state == "down"
    states: list[str] = []
    seen = wait(rendered, on_progress=lambda t, p: states.append(p.state))
    assert seen == Probe("ready", f"{server.url}/health: HTTP 200", elapsed_s=seen.elapsed_s)
    assert states[0] == "down"
    assert seen.elapsed_s >= 0.3


def test_vllm_dead_engine_is_unexpected(fake_server: Start) -> None:
    server = fake_server("vllm", health_status=500)
    seen = probe(unit("vllm", health_url=f"{server.url}/health"))
    assert seen == Probe("unexpected", f"{server.url}/health: HTTP 500: fake failure")


# ---------------------------------------------------------------------------------- Ollama


def test_ollama_loads_then_is_ready_with_its_vram(fake_server: Start) -> None:
    server = fake_server("ollama", model="gemma3", load_delay=0.3, size_vram=321 * MIB)
    rendered = ollama_unit(server.url)
    before = probe(rendered)
    assert before.state == "loading"
    assert "gemma3:latest not loaded yet" in before.detail
    seen = wait(rendered)
    assert seen.ready
    assert seen.size_vram == 321 * MIB
    assert seen.detail.startswith("gemma3:latest loaded: 321 MiB of 400 MiB in VRAM")
    generates = [r for r in server.requests if r.path == "/api/generate"]
    assert len(generates) == 1
    assert generates[0].method == "POST"
    assert generates[0].body == rendered.load
    loaded = server.loaded["gemma3:latest"]
    assert loaded["keep_alive"] == -1
    assert loaded["options"] == {"num_ctx": 2048, "num_gpu": 99}


def test_ollama_up_through_its_version_endpoint(fake_server: Start) -> None:
    server = fake_server("ollama", model="gemma3")
    assert wait(ollama_unit(server.url, up="/api/version")).ready
    assert [r.path for r in server.requests][:3] == ["/api/version", "/api/ps", "/api/generate"]


@pytest.mark.parametrize(
    ("served", "asked"),
    [("gemma3", "gemma3:latest"), ("gemma3:latest", "gemma3"), ("qwen2.5:7b", "qwen2.5:7b"),
     ("library/qwen2.5", "library/qwen2.5:latest")],
)  # fmt: skip
def test_ollama_names_match_with_or_without_latest(
    fake_server: Start, served: str, asked: str
) -> None:
    server = fake_server("ollama", model=served)
    assert wait(ollama_unit(server.url, model=asked)).ready


def test_ollama_a_model_it_does_not_have_fails_at_once(fake_server: Start) -> None:
    server = fake_server("ollama", model="gemma3")
    seen = wait(ollama_unit(server.url, model="llama3.2"), timeout_s=30)
    assert seen.state == "failed"
    assert "HTTP 404: model 'llama3.2' not found, try pulling it first" in seen.detail
    assert seen.detail.endswith("; pull it first (ollama pull)")
    assert seen.elapsed_s < 5


def test_ollama_down_then_not_answering_its_root(fake_server: Start) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert probe(ollama_unit(url)).state == "down"
    server = fake_server("ollama", health_status=500)
    assert probe(ollama_unit(server.url)) == Probe(
        "unexpected", f"{server.url}/: HTTP 500: fake failure"
    )


def test_the_fake_ollama_answers_as_documented(fake_server: Start) -> None:
    import json
    import urllib.request

    server = fake_server("ollama", model="gemma3")
    with urllib.request.urlopen(f"{server.url}/") as resp:
        assert resp.read() == b"Ollama is running"
    with urllib.request.urlopen(f"{server.url}/api/tags") as resp:
        assert [m["name"] for m in json.load(resp)["models"]] == ["gemma3:latest"]
    assert wait(ollama_unit(server.url)).ready
    with urllib.request.urlopen(f"{server.url}/api/ps") as resp:
        (entry,) = json.load(resp)["models"]
    assert {"name", "model", "size", "digest", "details", "expires_at", "size_vram"} <= set(entry)


# --------------------------------------------------------------------------------- command


def test_command_with_a_health_url_is_asked(fake_server: Start) -> None:
    server = fake_server("llama", loading=1)
    assert wait(unit("command", health_url=f"{server.url}/health")).ready


def test_command_without_one_settles() -> None:
    rendered = unit("command")
    assert probe(rendered, alive_s=0.5).state == "loading"
    assert probe(rendered, alive_s=SETTLE_S).ready
    assert probe(rendered).ready


def test_no_health_url_for_a_server_backend_fails() -> None:
    assert probe(unit("vllm")).state == "failed"
    no_urls = probe(unit("ollama", load={"model": "gemma3", "prompt": ""}))
    assert no_urls == Probe(
        "failed", "reconciler-chat: no URL to reach Ollama at (ready_url, health_url)"
    )
    assert probe(unit("ollama", health_url="http://127.0.0.1:1/")).state == "failed"


# ---------------------------------------------------------------------- HTTP: hosts, proxies


class _Redirects(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        target = {"/away": "http://192.0.2.1/health", "/here": "/ok"}.get(self.path)
        self.send_response(302 if target else 200)
        if target:
            self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def redirecting() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirects)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_redirects_are_followed_only_on_the_same_host(redirecting: str) -> None:
    assert probe(unit(health_url=f"{redirecting}/here")).ready
    away = probe(unit(health_url=f"{redirecting}/away"))
    assert away == Probe(
        "unexpected",
        f"{redirecting}/away: HTTP 302, a redirect to http://192.0.2.1/health (not followed)",
    )


def test_proxy_settings_are_ignored(fake_server: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    server = fake_server("llama")
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert probe(unit(health_url=f"{server.url}/health")).ready


# -------------------------------------------------------------- wait_ready on a fake clock


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(*states: str) -> Callable[[float], Probe]:
    answers = iter(states)

    def check(elapsed: float) -> Probe:
        state = next(answers, states[-1])
        return Probe(state, f"{state} at {elapsed:g}")  # type: ignore[arg-type]

    return check


def run(check: Callable[[float], Probe], *, alive: Callable[[], bool] = lambda: True,
        timeout_s: float = 10.0, **kwargs: Any) -> tuple[Probe, FakeClock]:  # fmt: skip
    clock = FakeClock()
    seen = wait_ready(unit(), alive=alive, timeout_s=timeout_s, interval_s=0.25, clock=clock,
                      sleep=clock.sleep, check=check, **kwargs)  # fmt: skip
    return seen, clock


def test_polls_every_interval_until_ready() -> None:
    progress: list[float] = []
    seen, clock = run(scripted("down", "loading", "loading", "ready"),
                      on_progress=lambda t, p: progress.append(t))  # fmt: skip
    assert seen == Probe("ready", "ready at 0.75", elapsed_s=0.75)
    assert clock.sleeps == [0.25, 0.25, 0.25]
    assert progress == [0.0, 0.25, 0.5]


def test_the_last_sleep_ends_at_the_timeout() -> None:
    seen, clock = run(scripted("loading"), timeout_s=0.6)
    assert clock.sleeps == pytest.approx([0.25, 0.25, 0.1])
    assert seen.state == "loading"
    assert seen.elapsed_s == pytest.approx(0.6)
    assert seen.detail == "reconciler-chat: not ready after 0.6 s (last: loading at 0.6); " + (
        "read its log, or allow longer"
    )


def test_a_dead_process_ends_the_wait_even_when_something_answers() -> None:
    lives = iter([True, True, False])
    seen, _clock = run(scripted("loading", "loading", "ready"), alive=lambda: next(lives))
    assert seen.state == "exited"
    assert seen.detail == (
        "reconciler-chat: the process exited after 0.5 s, before it was ready "
        "(last: ready at 0.5); its log says why"
    )


def test_an_answer_polling_cannot_change_ends_the_wait() -> None:
    seen, clock = run(scripted("unexpected", "failed", "ready"))
    assert seen.state == "failed"
    assert clock.sleeps == [0.25]


def test_a_command_without_health_url_is_ready_after_settling() -> None:
    clock = FakeClock()
    seen = wait_ready(unit("command"), alive=lambda: True, timeout_s=10, interval_s=0.5,
                      clock=clock, sleep=clock.sleep)  # fmt: skip
    assert seen.ready
    assert seen.elapsed_s == SETTLE_S


def test_the_fake_runs_as_a_process_and_stops_on_sigterm() -> None:
    port = free_port()
    argv = [sys.executable, "-m", "tests.fakes.server", "--kind", "ollama", "--port", str(port),
            "--model", "gemma3", "--load-delay", "0.2"]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        rendered = ollama_unit(f"http://127.0.0.1:{port}")
        seen = wait_ready(rendered, alive=lambda: proc.poll() is None, timeout_s=30)
        assert seen.ready, seen.detail
        assert seen.size_vram == 300 * MIB
    finally:
        proc.terminate()
        out, _err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert f"fake ollama listening on http://127.0.0.1:{port}" in out
