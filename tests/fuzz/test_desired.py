"""Fuzzing desired files through the command line: `check FILE` and `plan FILE --profile
rtx4090` on mutated copies of the example files (their lock files beside them).

A seeded, structure-aware generator: it parses an example, changes its data (values replaced
by wrong types, huge numbers, odd text, deep nesting; keys deleted or added; entries
duplicated), writes it back, and may then change the text itself (YAML that no dumper writes:
anchors and nested merge keys, escapes beyond Unicode, lone surrogates, control characters,
invalid UTF-8, cuts). Every run must end in exit 0, 1 or 2 without a traceback, within the
harness's time bound, and a failure must name the file. A failing case is replayed from its
label (`seed`, index).

Scale: `RECONCILER_FUZZ_SCALE=20` runs twenty times the CI budget.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from reconciler.config.yamlfile import dump_yaml
from tests.examples import desired_examples
from tests.fuzz.harness import Case, run_campaign, run_cli, scaled

SEED = 13
EXAMPLES = desired_examples()
_yaml = YAML(typ="safe", pure=True)
BASES = {p.name: _yaml.load(p.read_text()) for p in EXAMPLES}
LOCKS = {p.name: p.with_name(f"{p.stem}.lock.yaml").read_bytes() for p in EXAMPLES}

KEYS = (
    "name", "backend", "gguf", "model", "argv", "priority", "ctx", "parallel", "cache_type",
    "flash_attn", "gpu_layers", "split", "pin", "host", "port", "required", "fallbacks", "env",
    "extra_args", "vram_mib", "health_url", "policy", "headroom", "gpus", "models", "version",
    "thermal", "placement", "reserve_mib", "reserve_fraction", "shed_above_c", "evict_above_c",
    "foreign_processes", "exclusive", "max_models_per_gpu", "templates", "llama_server",
    "x-anchors", "prioriti", "<<",
)  # fmt: skip
WORDS = (
    "all", "auto", "never", "on", "off", "q8_0", "Q8_0", "q4_0", "f16", "llama.cpp",
    "llamacpp", "vllm", "ollama", "command", "binpack", "binpak", "spread", "yield", "ignore",
    "exclusive", "chat", "chat-small", "coder", "GPU-0000", "MIG-1", "8081", "1e400", "",
    " ", "~root/x.gguf", "~no-such-user-xyz/a.gguf", "${env.HOME}", "${env.NOPE}", "$${x",
    "/dev/null", "/", ".", "a/../b.gguf", "http://127.0.0.1:1/health", "http://", "--ctx-size",
    "--n-gpu-layers=3", "-ub", "--tensor-split", "é", "\u202e", "\x00", "\ufeff",
)  # fmt: skip
#: Raw YAML text a value may be replaced with (what a dumper never writes).
RAW = (
    "[" * 3000 + "]" * 3000,
    "{a: " * 2000 + "1" + "}" * 2000,
    "9" * 5000,
    "-" + "9" * 4400,
    "0x" + "f" * 5000,
    "0b" + "1" * 200,
    "1e400",
    "-1e400",
    "." + "9" * 500,
    "1" + "0" * 39,
    ".nan",
    "-.inf",
    '"\\U00110000"',
    '"\\UFFFFFFFF"',
    '"\\ud800"',
    '"\\ud83d\\ude00"',
    '"\\udfff\\ud800"',
    '"a\\0b"',
    '"\\x07"',
    "!!binary aGVsbG8=",
    "!secret x",
    "!!python/object:os.system x",
    "*nowhere",
    "&self [*self]",
    "{<<: *nowhere}",
    "{<<: [1, 2]}",
    "|\n  text\n",
    "'" + "a" * 300 + ".gguf'",
    "/" + "/".join(["b" * 200] * 30),
    "[" + ", ".join("1" for _ in range(30_000)) + "]",
    "[" + ", ".join(str(i) for i in range(70)) + "]",
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


def _scalar(rng: random.Random) -> Any:
    kind = rng.randrange(8)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 1, 2, 3, 7, 255, 65535, 65536, 2**31, 2**63, -(2**63)])
    if kind == 2:
        return rng.choice([0.5, -0.1, 1.0, 1e308, 1e-320, 0.1 + 0.2])
    if kind == 3:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(12)))
    if kind == 4:
        return [_scalar(rng) for _ in range(rng.randrange(4))]
    if kind == 5:
        return {rng.choice(KEYS): _scalar(rng) for _ in range(rng.randrange(3))}
    return rng.choice(WORDS)


class _Raw:
    """Placeholders for raw YAML text, put in after dumping the data."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def token(self, text: str) -> str:
        self.texts.append(text)
        return f"RAWTOKEN{len(self.texts) - 1}X"

    def fill(self, text: str) -> str:
        for i, raw in enumerate(self.texts):
            text = text.replace(f"RAWTOKEN{i}X", raw.replace("\n", "\n  ") if "|" in raw else raw)
        return text


def _mutate_data(rng: random.Random, doc: Any, raw: _Raw) -> list[str]:
    done = []
    for _ in range(rng.randrange(1, 4)):
        targets = [p for p in _paths(doc) if p]
        if not targets:
            break
        path = rng.choice(targets)
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = rng.choice(["replace", "replace", "raw", "delete", "add", "duplicate"])
        done.append(f"{action} {'.'.join(map(str, path))}")
        if action == "replace":
            parent[path[-1]] = _scalar(rng)
        elif action == "raw":
            parent[path[-1]] = raw.token(rng.choice(RAW))
        elif action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[rng.choice(KEYS)] = _scalar(rng)
        elif action == "duplicate" and isinstance(parent, list):
            parent.insert(rng.randrange(len(parent) + 1), copy.deepcopy(parent[path[-1]]))
    return done


def _merges(depth: int, fan: int) -> str:
    lines = ["x-m0: &m0 {ctx: 4096, parallel: 1}"]
    for i in range(1, depth + 1):
        refs = ", ".join([f"*m{i - 1}"] * fan)
        lines.append(f"x-m{i}: &m{i} {{<<: [{refs}]}}")
    lines.append(f"x-use: {{<<: *m{depth}}}")
    return "\n".join(lines) + "\n"


def _fallback_dag(count: int) -> str:
    lines = ["models:"]
    for i in range(count):
        fallbacks = ", ".join(f"m{j}" for j in (i + 1, i + 2, i + 3) if j < count)
        lines.append(f"  - {{name: m{i}, gguf: m{i}.gguf, port: {9000 + i}, ")
        lines[-1] += f"fallbacks: [{fallbacks}]}}"
    return "\n".join(lines) + "\n"


def _many_models(count: int) -> str:
    lines = ["models:"]
    lines += [f"  - {{name: m{i}, gguf: m{i}.gguf, port: {1000 + i}}}" for i in range(count)]
    return "\n".join(lines) + "\n"


ODD_CHARS = "\x00\x07\x1b\t\ufeff\ufffe\u2028\x85:{[&*!|>%@`'\""


def _anchors() -> str:
    return "x-a: &a {ctx: 8192}\nx-b: &a {ctx: 4096}\nx-c: &c [*a, *a, *a]\n"


#: Whole-text mutations: (name, function of (rng, text) -> text).
TEXT: tuple[tuple[str, Callable[[random.Random, str], str]], ...] = (
    ("cut", lambda r, t: t[: r.randrange(len(t) + 1)]),
    ("drop-line", lambda r, t: "\n".join(_drop(r, t.split("\n")))),
    ("dup-line", lambda r, t: "\n".join(_dup(r, t.split("\n")))),
    ("insert-char", lambda r, t: _insert(r, t, r.choice(ODD_CHARS))),
    ("merges", lambda r, t: t + _merges(r.randrange(2, 40), r.randrange(1, 5))),
    ("fallback-dag", lambda r, t: _replace_models(t, _fallback_dag(r.randrange(20, 60)))),
    ("many-models", lambda r, t: _replace_models(t, _many_models(r.choice([129, 200, 3000])))),
    ("many-gpus", lambda r, t: t + f"gpus: {list(range(r.choice([65, 9000])))}\n"),
    ("anchors", lambda r, t: t + _anchors()),
    ("tabs", lambda r, t: t.replace("  ", "\t", r.randrange(1, 4))),
    ("crlf", lambda r, t: t.replace("\n", "\r\n")),
    ("document-end", lambda r, t: t + "---\nversion: 1\n"),
    ("root", lambda r, t: r.choice(["[]\n", "42\n", "~\n", "'text'\n", "!!set {a}\n", "---\n"])),
    ("odd-keys", lambda r, t: t + r.choice(["? [a, b]\n: 1\n", "~: 1\n", "1: x\n", "? {a: 1}\n"])),
    ("long-text", lambda r, t: t.replace("name: ", "name: " + "n" * r.choice([49, 10**5]), 1)),
)  # fmt: skip


def _drop(rng: random.Random, lines: list[str]) -> list[str]:
    if lines:
        del lines[rng.randrange(len(lines))]
    return lines


def _dup(rng: random.Random, lines: list[str]) -> list[str]:
    if lines:
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
    return lines


def _insert(rng: random.Random, text: str, char: str) -> str:
    at = rng.randrange(len(text) + 1)
    return text[:at] + char + text[at:]


def _replace_models(text: str, models: str) -> str:
    head = text.split("\nmodels:", 1)[0]
    return head + "\n" + models


def _bytes_mutation(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    junk = rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80\x80"])
    return data[:at] + junk + data[at:]


def generate(seed: int, count: int) -> Iterator[Case]:
    """`count` cases from `seed`: each a mutated example, run by `check` or `plan`."""
    for index in range(count):
        rng = random.Random(f"{seed}-{index}")
        example = rng.choice(sorted(BASES))
        doc = copy.deepcopy(BASES[example])
        raw = _Raw()
        done = _mutate_data(rng, doc, raw) if rng.random() < 0.8 else []
        text = raw.fill(dump_yaml(doc))
        if rng.random() < 0.4:
            name, change = rng.choice(TEXT)
            text = change(rng, text)
            done.append(name)
        data = text.encode("utf-8", "surrogatepass")
        if rng.random() < 0.05:
            data = _bytes_mutation(rng, data)
            done.append("bytes")
        verb = rng.choice(["check", "plan"])
        yield Case(
            f"seed {seed} #{index} {example} {verb}: {'; '.join(done) or 'unchanged'}",
            _writer(example, data, verb),
            names=example,
        )


def _writer(example: str, data: bytes, verb: str) -> Callable[[Path], list[str]]:
    def write(folder: Path) -> list[str]:
        (folder / example).write_bytes(data)
        (folder / example.replace(".yaml", ".lock.yaml")).write_bytes(LOCKS[example])
        if verb == "plan":
            return ["plan", example, "--profile", "rtx4090"]
        return ["check", example]

    return write


def test_mutated_desired_files_never_end_in_a_traceback(tmp_path: Path) -> None:
    campaign = run_campaign("desired files", generate(SEED, scaled(300)), tmp_path)
    assert campaign.failures == [], "\n\n".join(campaign.failures)


def test_the_generator_is_reproducible() -> None:
    first = [c.label for c in generate(SEED, 20)]
    assert first == [c.label for c in generate(SEED, 20)]
    assert len(set(first)) > 10


def test_the_raw_snippets_survive_dumping() -> None:
    raw = _Raw()
    doc = {"version": 1, "models": [{"name": raw.token(RAW[0])}]}
    assert json.dumps(raw.fill(dump_yaml(doc))).count("[") >= 3000


def test_messages_about_odd_text_can_be_printed_to_a_utf8_terminal(tmp_path: Path) -> None:
    """In-process output is a StringIO, which takes lone surrogates that a real terminal's
    UTF-8 stream refuses: every message about odd text must encode."""
    example = "workstation.yaml"
    for i, raw in enumerate(['"\\ud800"', '"\\udfff\\ud800"', '"a\\x07"', '"\\x1b[31m"']):
        doc = copy.deepcopy(BASES[example])
        holder = _Raw()
        doc["models"][0]["name"] = holder.token(raw)
        doc[holder.token(raw)] = 1  # a key too
        folder = tmp_path / str(i)
        folder.mkdir()
        argv = _writer(example, holder.fill(dump_yaml(doc)).encode(), "check")(folder)
        with contextlib.chdir(folder):
            outcome = run_cli(argv)
        assert outcome.code == 1, outcome
        outcome.err.encode("utf-8")  # raises on a lone surrogate
        assert "\x1b" not in outcome.err
        assert "\x07" not in outcome.err
