"""Fake llama-server, vLLM and Ollama HTTP servers that answer as their documented APIs do.

In a test, through the `fake_server` fixture (tests/conftest.py), on a free 127.0.0.1 port:

    server = fake_server("llama", loading=3)   # /health: 503 three times, then 200

As a real process, for the applier's end-to-end tests (the `command` backend):

    python -m tests.fakes.server --kind ollama --port 8123 --model gemma3 --load-delay 0.5

- llama: `GET /health` answers 503 (`Loading model`) for the first `loading` requests, then
  200 `{"status": "ok"}`; `POST /completion` returns text once loaded; `GET /v1/models`.
- vllm: the port is bound at once but listened on only after `delay` seconds (vLLM binds
  before its engine starts, so a client is refused until then); then `GET /health` 200 with
  an empty body and `GET /v1/models` lists the model.
- ollama: `GET /` says "Ollama is running" and `GET /api/version` gives a version; `POST
  /api/generate` with an empty prompt loads the model (after `load_delay` seconds;
  `keep_alive: 0` unloads it) and records its `keep_alive` and `options`; `GET /api/ps`
  lists loaded models with `size_vram`; `GET /api/tags` lists the models it has; an unknown
  model is 404 "not found, try pulling it first".

`health_status` makes /health (or Ollama's /) always answer that status instead.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

__all__ = ["Behaviour", "FakeServer", "Recorded", "free_port", "main"]

Kind = Literal["llama", "vllm", "ollama"]
MIB = 2**20


def free_port() -> int:
    """A port nothing listens on now (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tagged(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


@dataclass(frozen=True)
class Behaviour:
    kind: Kind
    model: str = "fake-model"
    loading: int = 0  # llama: /health answers 503 this many times first
    delay: float = 0.0  # vllm: seconds before it listens
    load_delay: float = 0.0  # ollama: seconds a load takes
    health_status: int | None = None  # always answer /health (ollama: /) with this status
    size: int = 400 * MIB  # ollama: the loaded model's size
    size_vram: int = 300 * MIB  # ollama: of which on the GPUs
    models: tuple[str, ...] = ()  # ollama: what /api/tags has (default: `model`)


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    body: Any = None  # the JSON body, when there was one


@dataclass
class _State:
    behaviour: Behaviour
    requests: list[Recorded] = field(default_factory=list)
    health_calls: int = 0
    loaded: dict[str, dict[str, Any]] = field(default_factory=dict)  # ollama: name -> request
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            sys.stdout.write(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}\n")
            sys.stdout.flush()

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode("utf-8", "replace")

    def do_GET(self) -> None:
        self._dispatch("GET", None)

    def do_POST(self) -> None:
        self._dispatch("POST", self._body())

    def _dispatch(self, method: str, body: Any) -> None:
        state = self.server.state
        with state.lock:
            state.requests.append(Recorded(method, self.path, body))
        kind = state.behaviour.kind
        route = {"llama": _llama, "vllm": _vllm, "ollama": _ollama}[kind]
        route(self, state, method, self.path.split("?")[0], body)


def _not_found(h: _Handler, path: str) -> None:
    h._send(404, {"error": {"code": 404, "message": f"File Not Found: {path}"}})


def _models_v1(h: _Handler, b: Behaviour, owner: str) -> None:
    h._send(
        200, {"object": "list", "data": [{"id": b.model, "object": "model", "owned_by": owner}]}
    )


def _llama(h: _Handler, state: _State, method: str, path: str, body: Any) -> None:
    b = state.behaviour
    with state.lock:
        if path == "/health":
            state.health_calls += 1
        loaded = state.health_calls > b.loading
    if b.health_status is not None and path == "/health":
        h._send(b.health_status, {"error": {"code": b.health_status, "message": "fake failure"}})
    elif not loaded and path in ("/health", "/completion"):
        h._send(
            503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
        )
    elif path == "/health":
        h._send(200, {"status": "ok"})
    elif path == "/completion" and method == "POST":
        prompt = str((body or {}).get("prompt", ""))
        h._send(200, {"content": " fake text", "stop": True, "prompt": prompt, "model": b.model})
    elif path == "/v1/models":
        _models_v1(h, b, "llamacpp")
    else:
        _not_found(h, path)


def _vllm(h: _Handler, state: _State, method: str, path: str, body: Any) -> None:
    b = state.behaviour
    if path == "/health":
        status = b.health_status or 200
        h._send(status, b"" if status == 200 else b"fake failure", "text/plain")
    elif path == "/v1/models":
        _models_v1(h, b, "vllm")
    else:
        h._send(404, {"detail": "Not Found"})


def _ps_entry(b: Behaviour, name: str, request: dict[str, Any]) -> dict[str, Any]:
    options = request.get("options") or {}
    return {
        "name": name,
        "model": name,
        "size": b.size,
        "digest": "0" * 64,
        "details": {"format": "gguf", "family": "fake", "quantization_level": "Q4_K_M"},
        "expires_at": "2318-08-09T00:00:00Z",  # keep_alive -1: forever
        "size_vram": b.size_vram,
        "context_length": options.get("num_ctx", 4096),
    }


def _ollama(h: _Handler, state: _State, method: str, path: str, body: Any) -> None:
    b = state.behaviour
    have = {tagged(m) for m in (b.models or (b.model,))}
    if path == "/":
        if b.health_status is not None:
            h._send(b.health_status, b"fake failure", "text/plain")
        else:
            h._send(200, b"Ollama is running", "text/plain; charset=utf-8")
    elif path == "/api/version":
        h._send(200, {"version": "0.0.0-fake"})
    elif path == "/api/tags":
        h._send(200, {"models": [{"name": m, "model": m, "size": b.size} for m in sorted(have)]})
    elif path == "/api/ps":
        with state.lock:
            models = [_ps_entry(b, n, r) for n, r in sorted(state.loaded.items())]
        h._send(200, {"models": models})
    elif path == "/api/generate" and method == "POST" and isinstance(body, dict):
        _ollama_generate(h, state, body, have)
    else:
        h._send(404, b"404 page not found", "text/plain")


def _ollama_generate(h: _Handler, state: _State, body: dict[str, Any], have: set[str]) -> None:
    name = tagged(str(body.get("model", "")))
    if name not in have:
        h._send(404, {"error": f"model '{body.get('model')}' not found, try pulling it first"})
        return
    reply = {"model": body["model"], "created_at": "2025-01-01T00:00:00Z", "response": ""}
    if not body.get("prompt"):
        if body.get("keep_alive") in (0, "0", "0s"):
            with state.lock:
                state.loaded.pop(name, None)
            h._send(200, {**reply, "done": True, "done_reason": "unload"})
            return
        time.sleep(state.behaviour.load_delay)
        with state.lock:
            state.loaded[name] = body
        h._send(200, {**reply, "done": True, "done_reason": "load"})
        return
    with state.lock:
        state.loaded.setdefault(name, body)
    final = {**reply, "response": " fake text", "done": True, "done_reason": "stop"}
    if body.get("stream") is False:
        h._send(200, final)
    else:
        chunks = [{**reply, "response": " fake", "done": False}, {**final, "response": " text"}]
        h._send(200, "\n".join(json.dumps(c) for c in chunks).encode(), "application/x-ndjson")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State
    verbose: bool = False


class FakeServer:
    """One fake on 127.0.0.1: `start()` binds at once (and listens after `delay` for vllm)."""

    def __init__(self, behaviour: Behaviour, *, port: int = 0, verbose: bool = False) -> None:
        self.behaviour = behaviour
        self._server = _Server(("127.0.0.1", port), _Handler, bind_and_activate=False)
        self._server.state = _State(behaviour)
        self._server.verbose = verbose
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._serving = False

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[Recorded]:
        with self._server.state.lock:
            return list(self._server.state.requests)

    @property
    def loaded(self) -> dict[str, dict[str, Any]]:
        """Ollama: the loaded models, name -> the request that loaded them."""
        with self._server.state.lock:
            return dict(self._server.state.loaded)

    def start(self) -> FakeServer:
        self._server.server_bind()
        delay = self.behaviour.delay if self.behaviour.kind == "vllm" else 0.0
        if not delay:  # listening before start() returns
            self._serving = True
            self._server.server_activate()
        thread = threading.Thread(target=self._serve, args=(delay,), daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _serve(self, delay: float) -> None:
        if delay:
            if self._stopped.wait(delay):
                return
            with self._lock:
                if self._stopped.is_set():
                    return
                self._serving = True
                self._server.server_activate()
        if self._server.verbose:
            sys.stdout.write(f"fake {self.behaviour.kind} listening on {self.url}\n")
            sys.stdout.flush()
        self._server.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()
            serving = self._serving
        if serving:
            self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(5)

    def serve(self) -> None:
        """Run in this thread until SIGTERM or SIGINT (the process form)."""
        self.start()
        try:
            while self._threads[0].is_alive():
                self._threads[0].join(0.2)
        finally:
            self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.server", description=__doc__)
    parser.add_argument("--kind", choices=["llama", "vllm", "ollama"], required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--loading", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--load-delay", type=float, default=0.0)
    parser.add_argument("--health-status", type=int)
    parser.add_argument("--size-vram-mib", type=int, default=300)
    parser.add_argument("--crash-after", type=float, help="exit 3 after this many seconds")
    parser.add_argument("--ignore-sigterm", action="store_true", help="only SIGKILL stops it")
    args = parser.parse_args(argv)
    behaviour = Behaviour(
        kind=args.kind,
        model=args.model,
        loading=args.loading,
        delay=args.delay,
        load_delay=args.load_delay,
        health_status=args.health_status,
        size_vram=args.size_vram_mib * MIB,
    )
    server = FakeServer(behaviour, port=args.port, verbose=True)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, signal.SIG_IGN if args.ignore_sigterm else stop)
    if args.crash_after is not None:  # a crash: no clean-up, no goodbye
        timer = threading.Timer(args.crash_after, os._exit, args=(3,))
        timer.daemon = True
        timer.start()
    try:
        server.serve()
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
