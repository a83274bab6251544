"""Is an instance ready? The readiness and load protocol of each backend, over loopback HTTP.

- llama.cpp, vLLM, and `command` with a `health_url`: `GET health_url`; 200 is ready, 503 is
  loading (llama-server answers 503 while it loads the model), a refused connection is down
  (not listening yet), anything else is unexpected and said with its status and first line.
- Ollama: the server answers `GET /` once it is up; the model is then loaded by one `POST
  /api/generate` with `rendered.load` as its body (empty prompt, `keep_alive: -1`, `options`),
  and is ready when `GET /api/ps` lists it (by name, with or without `:latest`); `size_vram`
  (bytes) comes back for the applier to compare with the estimate.
- `command` without a `health_url`: ready once the process has stayed alive `SETTLE_S`.

Every request has a short timeout (the Ollama load excepted: it lasts as long as the load, on
its own thread), ignores proxy settings, and follows no redirect to another host. `wait_ready`
is the polling loop, with the clock, the sleep and the check passed in so that tests drive it
without waiting.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from reconciler.apply.units import Rendered

__all__ = ["REQUEST_TIMEOUT_S", "SETTLE_S", "Checker", "Probe", "probe", "wait_ready"]

REQUEST_TIMEOUT_S = 2.0  # one request; a loopback server that needs longer is not healthy
SETTLE_S = 2.0  # a `command` without a health URL is ready once alive this long
BODY_LIMIT = 1 << 20  # bytes read from any answer

State = Literal["ready", "loading", "down", "unexpected", "failed", "exited"]


@dataclass(frozen=True)
class Probe:
    """One look at an instance. `ready`, `loading` and `down` say where it is on the way up;
    `unexpected` is an answer that is none of those (polling goes on); `failed` is one that
    polling cannot change (Ollama refused to load the model); `exited` means the process
    died before it was ready."""

    state: State
    detail: str  # one line for a person: what was seen, and where
    size_vram: int | None = None  # Ollama: bytes of the loaded model on the GPUs (/api/ps)
    elapsed_s: float = 0.0  # wait_ready: seconds from the first probe to this one

    @property
    def ready(self) -> bool:
        return self.state == "ready"


# ----------------------------------------------------------------------------------- HTTP


class _SameHost(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to the same scheme, host and port; any other is an answer."""

    def redirect_request(  # noqa: PLR0917 (urllib's signature)
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if (old.scheme, old.netloc) != (new.scheme, new.netloc):
            return None  # urllib then raises HTTPError with the 3xx status
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _SameHost())


@dataclass(frozen=True)
class _Answer:
    status: int | None  # None: no HTTP answer (see error)
    body: bytes = b""
    error: str = ""
    refused: bool = False
    location: str = ""


def _request(
    url: str, *, body: dict[str, Any] | None = None, timeout: float = REQUEST_TIMEOUT_S
) -> _Answer:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return _Answer(int(resp.status), resp.read(BODY_LIMIT))
    except urllib.error.HTTPError as exc:
        with exc:
            text = exc.read(BODY_LIMIT) if exc.fp is not None else b""
        return _Answer(exc.code, text, location=exc.headers.get("Location", "") or "")
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ConnectionRefusedError):
            return _Answer(None, error="connection refused", refused=True)
        if isinstance(reason, TimeoutError):
            return _Answer(None, error=f"no answer within {timeout:g} s")
        return _Answer(None, error=str(reason))
    except TimeoutError:
        return _Answer(None, error=f"no answer within {timeout:g} s")
    except (OSError, http.client.HTTPException) as exc:
        return _Answer(None, error=f"{type(exc).__name__}: {exc}".rstrip(": "))


def _first_line(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):  # llama.cpp: {"error": {"message": ...}}; Ollama: {"error": ...}
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            text = err["message"]
        elif isinstance(err, str):
            text = err
    line = text.splitlines()[0] if text else ""
    return line[:200] + ("..." if len(line) > 200 else "")


def _said(url: str, answer: _Answer) -> str:
    """`GET url: 404 Not Found: first line` or `GET url: connection refused`."""
    if answer.status is None:
        return f"{url}: {answer.error}"
    text = f"{url}: HTTP {answer.status}"
    if 300 <= answer.status < 400:
        return f"{text}, a redirect to {answer.location or '?'} (not followed)"
    line = _first_line(answer.body)
    return f"{text}: {line}" if line else text


def _http_probe(url: str) -> Probe:
    answer = _request(url)
    if answer.status == 200:
        return Probe("ready", f"{url}: HTTP 200")
    if answer.status == 503:
        return Probe("loading", _said(url, answer))
    if answer.refused:
        return Probe("down", f"{url}: connection refused (not listening yet)")
    return Probe("unexpected", _said(url, answer))


# --------------------------------------------------------------------------------- Ollama


def _base(rendered: Rendered) -> str:
    url = rendered.ready_url or rendered.health_url or ""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _tagged(name: str) -> str:
    """Ollama's full name: a name without a tag means `:latest`."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _ollama_model(rendered: Rendered) -> str:
    return str((rendered.load or {}).get("model", ""))


def _listed(rendered: Rendered) -> Probe:
    """GET /api/ps: ready with size_vram when the model is listed, loading when not."""
    url = rendered.ready_url or f"{_base(rendered)}/api/ps"
    answer = _request(url)
    if answer.status != 200:
        state: State = "down" if answer.refused else "unexpected"
        return Probe(state, _said(url, answer))
    want = _tagged(_ollama_model(rendered))
    try:
        models = json.loads(answer.body)["models"] or []
    except (ValueError, KeyError, TypeError):
        return Probe("unexpected", f"{url}: not the JSON of /api/ps: {_first_line(answer.body)}")
    for entry in models:
        if not isinstance(entry, dict):
            continue
        names = {_tagged(str(entry.get(key, ""))) for key in ("name", "model")}
        if want in names:
            vram = entry.get("size_vram")
            vram = int(vram) if isinstance(vram, int | float) else None
            size = entry.get("size")
            mib = "?" if vram is None else f"{vram / 2**20:.0f}"
            of = f" of {size / 2**20:.0f} MiB" if isinstance(size, int | float) else ""
            return Probe("ready", f"{want} loaded: {mib} MiB{of} in VRAM ({url})", vram)
    return Probe("loading", f"{want} not loaded yet ({url} lists {len(models)} models)")


def _ollama_probe(rendered: Rendered) -> Probe:
    if not _ollama_model(rendered):
        return Probe("failed", f"{rendered.unit}: no model to load (rendered.load has no model)")
    if not (rendered.ready_url or rendered.health_url):
        return Probe(
            "failed", f"{rendered.unit}: no URL to reach Ollama at (ready_url, health_url)"
        )
    up = rendered.health_url or f"{_base(rendered)}/"
    answer = _request(up)
    if answer.refused:
        return Probe("down", f"{up}: connection refused (ollama serve not listening yet)")
    if answer.status != 200:
        return Probe("unexpected", _said(up, answer))
    return _listed(rendered)


def _load(rendered: Rendered, timeout: float) -> Probe | None:
    """POST /api/generate with `rendered.load`: None when Ollama loaded it, else why not."""
    url = f"{_base(rendered)}/api/generate"
    answer = _request(url, body=dict(rendered.load or {}), timeout=timeout)
    if answer.status is None:
        return Probe("unexpected", f"loading through {_said(url, answer)}")
    if answer.status != 200:  # 404: not pulled; 500: does not fit, a broken file, ...
        hint = "; pull it first (ollama pull)" if answer.status == 404 else ""
        return Probe("failed", f"Ollama refused to load: {_said(url, answer)}{hint}")
    lines = answer.body.decode("utf-8", "replace").strip().splitlines() or ["{}"]
    try:
        last = json.loads(lines[-1])
    except ValueError:
        return Probe("unexpected", f"{url}: not JSON: {_first_line(answer.body)}")
    if isinstance(last, dict) and last.get("error"):
        return Probe("failed", f"Ollama refused to load: {url}: {last['error']}")
    return None


# ---------------------------------------------------------------------------------- probe


def probe(rendered: Rendered, *, alive_s: float | None = None) -> Probe:
    """One look, no waiting and no loading. `alive_s`: how long the process has been running
    (for a `command` without a health URL; None counts as settled)."""
    if rendered.backend == "ollama":
        return _ollama_probe(rendered)
    if rendered.health_url:
        return _http_probe(rendered.health_url)
    if rendered.backend == "command":
        if alive_s is None or alive_s >= SETTLE_S:
            return Probe("ready", f"alive for {SETTLE_S:g} s (no health_url to ask)")
        return Probe("loading", f"alive {alive_s:.1f} s of {SETTLE_S:g} (no health_url to ask)")
    return Probe("failed", f"{rendered.unit}: no health URL for backend {rendered.backend}")


class Checker:
    """The check `wait_ready` repeats: `probe`, and for Ollama the one load request, sent on
    a thread (it lasts as long as the load) once the server is up. Called with the seconds
    since the wait began."""

    def __init__(self, rendered: Rendered, *, load_timeout_s: float) -> None:
        self.rendered = rendered
        self.load_timeout_s = load_timeout_s
        self._thread: threading.Thread | None = None
        self._load_result: list[Probe | None] = []

    def __call__(self, elapsed_s: float) -> Probe:
        seen = probe(self.rendered, alive_s=elapsed_s)
        if self.rendered.backend != "ollama" or seen.state != "loading":
            return seen
        if self._thread is None:
            timeout = max(self.load_timeout_s - elapsed_s, REQUEST_TIMEOUT_S)
            self._thread = threading.Thread(
                target=lambda: self._load_result.append(_load(self.rendered, timeout)),
                name=f"ollama-load-{self.rendered.unit}",
                daemon=True,
            )
            self._thread.start()
            return dataclasses.replace(seen, detail=f"{seen.detail}; asked Ollama to load it")
        if self._load_result and (failure := self._load_result[0]) is not None:
            return failure
        return seen


# ----------------------------------------------------------------------------- wait_ready


def wait_ready(
    rendered: Rendered,
    *,
    alive: Callable[[], bool],
    timeout_s: float,
    interval_s: float = 0.25,
    on_progress: Callable[[float, Probe], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    check: Callable[[float], Probe] | None = None,
) -> Probe:
    """Poll until the instance is ready, its process died, the answer cannot change, or
    `timeout_s` passed; the last Probe, its `elapsed_s` set. A ready answer counts only while
    the process is alive (another program on the port could answer). `check` replaces the
    real `Checker` (tests)."""
    check = check or Checker(rendered, load_timeout_s=timeout_s)
    start = clock()
    deadline = start + timeout_s
    while True:
        seen = check(clock() - start)
        now = clock()
        elapsed = now - start
        seen = dataclasses.replace(seen, elapsed_s=elapsed)
        if not alive():
            return Probe(
                "exited",
                f"{rendered.unit}: the process exited after {elapsed:.1f} s, before it was "
                f"ready (last: {seen.detail}); its log says why",
                elapsed_s=elapsed,
            )
        if seen.state in ("ready", "failed"):
            return seen
        if on_progress is not None:
            on_progress(elapsed, seen)
        if deadline - now < 1e-3:  # what is left is less than any poll could use
            return dataclasses.replace(
                seen,
                detail=f"{rendered.unit}: not ready after {timeout_s:g} s (last: {seen.detail}); "
                "read its log, or allow longer",
            )
        sleep(min(interval_s, deadline - now))
