from __future__ import annotations

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
