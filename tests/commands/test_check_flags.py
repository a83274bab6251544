"""`reconcile check` refuses, from the table in `reconciler.backends`, the flags in
`extra_args` that the reconciler sets itself or whose memory the estimator cannot model."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.backends import BACKENDS, Managed, Modelled, Refused
from reconciler.cli import main

HEADERS = {
    "llama.cpp": "    gguf: m.gguf\n    port: 8081\n",
    "vllm": "    backend: vllm\n    model: org/m\n    vram_mib: 4096\n    port: 8000\n",
    "ollama": "    backend: ollama\n    model: llama3.1:8b\n    vram_mib: 4096\n",
    "command": "    backend: command\n    argv: [my-server]\n    vram_mib: 4096\n",
}


def desired(tmp_path: Path, backend: str, *args: str) -> Path:
    path = tmp_path / "desired.yaml"
    items = "".join(f"      - {a!r}\n" for a in ["--threads", "8", *args])
    path.write_text(f"version: 1\nmodels:\n  - name: m\n{HEADERS[backend]}    extra_args:\n{items}")
    return path


def refused() -> list[tuple[str, str, Managed | Refused]]:
    return [
        (name, flag, entry)
        for name, table in sorted(BACKENDS.items())
        for entry in table.entries
        if not isinstance(entry, Modelled)
        for flag in entry.names
    ]


def message(flag: str, entry: Managed | Refused) -> str:
    if isinstance(entry, Refused):
        return (
            f"{flag} changes memory in a way the estimator does not model ({entry.adds}); "
            "remove it, or run this model with backend: command and vram_mib"
        )
    if entry.key:
        return f"{flag} is set by the reconciler from `{entry.key}`; use that key instead"
    return f"{flag} is set by the reconciler, which sizes and places the model itself; remove it"


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    code = main(["check", str(path)])
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


@pytest.mark.parametrize(
    ("backend", "flag", "entry"), refused(), ids=[f"{b} {f}" for b, f, _e in refused()]
)
@pytest.mark.parametrize("inline", [False, True], ids=["two items", "flag=value"])
def test_every_managed_and_refused_flag_is_refused_at_its_place(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    *,
    backend: str,
    flag: str,
    entry: Managed | Refused,
    inline: bool,
) -> None:
    path = desired(tmp_path, backend, *([f"{flag}=1"] if inline else [flag, "1"]))
    line = len(path.read_text().splitlines()) - (0 if inline else 1)
    code, out, err = check(path, capsys)
    assert (code, out) == (1, "")
    assert err == [
        f"{path}:{line}:9: models[0].extra_args[2]: {message(flag, entry)}",
        f"1 problem in {path}; fix and run `reconcile check` again.",
    ]


def test_the_table_refuses_something_for_each_server() -> None:
    assert {b for b, _f, _e in refused()} == {"llama.cpp", "vllm"}


@pytest.mark.parametrize(
    "args",
    [
        ["-ub", "1024"],
        ["--ubatch-size=2048", "-b", "4096"],
        ["--batch-size", "512"],
        ["--kv-unified"],
        ["-kvu", "--no-kv-unified", "-no-kvu"],
        ["--swa-full"],
    ],
)
def test_modelled_flags_are_accepted_silently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    code, out, err = check(desired(tmp_path, "llama.cpp", *args), capsys)
    assert (code, err) == (0, [])
    assert out.splitlines()[0].endswith("valid, 1 model")


@pytest.mark.parametrize("backend", ["ollama", "command"])
def test_ollama_and_command_models_pass_every_flag_through(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    code, _out, err = check(
        desired(tmp_path, backend, "--port", "1", "-c", "8", "--mmproj"), capsys
    )
    assert (code, err) == (0, [])


@pytest.mark.parametrize(
    ("args", "where", "problem"),
    [
        (
            ["-ub", "big"],
            "10:9: models[0].extra_args[3]",
            '-ub takes a positive integer, got "big"',
        ),
        (["-b=0"], "9:9: models[0].extra_args[2]", '-b takes a positive integer, got "0"'),
        (["-b", "-1"], "10:9: models[0].extra_args[3]", '-b takes a positive integer, got "-1"'),
        (
            ["--ubatch-size"],
            "9:9: models[0].extra_args[2]",
            "--ubatch-size needs a positive integer after it, e.g. [--ubatch-size, 1024]",
        ),
        (
            ["--swa-full=true"],
            "9:9: models[0].extra_args[2]",
            "--swa-full takes no value; write it alone",
        ),
    ],
)
def test_modelled_values_are_checked_at_their_place(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    where: str,
    problem: str,
) -> None:
    path = desired(tmp_path, "llama.cpp", *args)
    code, _out, err = check(path, capsys)
    assert code == 1
    assert err[0] == f"{path}:{where}: {problem}"
