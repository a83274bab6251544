"""Mutated lock files through `check` and `plan`: no traceback, a bounded time, and a failure
that names the lock file.

The starting point is a real lock (desired/workstation.lock.yaml: four models, up to 48
layers) beside the example it belongs to, whose GGUFs are absent here, so every estimate comes
from the lock. A mutation changes the JSON tree (a value replaced by a negative, huge, zero,
fractional, string, list, mapping or null one; a key removed or added; the layers emptied or
multiplied to thousands) or the text (NaN, Infinity, a 5000-digit number, deep nesting, a
duplicate key, a cut, flipped bytes); a quarter are written in the old YAML format. The
example's `required:` is dropped so that exit 1 can only come from a problem in a file.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path
from typing import Any

from reconciler.config.yamlfile import dump_yaml
from tests.fuzz.harness import Case, run_campaign, scaled

ROOT = Path(__file__).resolve().parents[2]
SEED = 13
RAW = "__raw__"  # a value replaced in the text afterwards (what json.dumps cannot write)
COMMANDS: list[list[str]] = [
    ["check", "desired.yaml"],
    ["check", "desired.yaml", "--profile", "rtx4090"],
    ["check", "desired.yaml", "--profile", "rtx4090", "--profile", "rtx3060-12g"],
    ["plan", "desired.yaml", "--profile", "rtx4090"],
    ["plan", "desired.yaml", "--profile", "rtx3060-12g", "--json"],
]
RAW_VALUES = [
    "NaN",
    "Infinity",
    "-Infinity",
    "9" * 5000,
    "-" + "7" * 4400,
    "1e999",
    "[" * 3000 + "]" * 3000,
    "{" + '"a":' * 1 + "{}" + "}",
    "0x10",
    "01",
]


def _paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*at, key))
    elif isinstance(node, list):
        # a few items of a long list: the layers are alike
        for i in sorted({0, len(node) - 1, len(node) // 2}) if node else []:
            out += _paths(node[i], (*at, i))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


def _value(rng: random.Random) -> tuple[str, Any]:
    choices: list[tuple[str, Any]] = [
        ("-1", -1),
        ("-90979 MiB", -90979 * 2**20),
        ("zero", 0),
        ("2^63", 2**63),
        ("10^30", 10**30),
        ("1.5", 1.5),
        ("'1e9'", "1e9"),
        ("''", ""),
        ("[]", []),
        ("{}", {}),
        ("null", None),
        ("true", True),
        ("a raw value", RAW),
    ]
    return rng.choice(choices)


def _mutate(data: Any, rng: random.Random) -> tuple[str, str | None]:
    """Change `data` in place; (what was done, a raw text for RAW or None)."""
    paths = _paths(data)
    path = rng.choice(paths[1:])
    parent, key = _get(data, path[:-1]), path[-1]
    op = rng.random()
    if op < 0.15 and isinstance(parent, dict):
        del parent[key]
        return f"removed {path}", None
    if op < 0.22 and isinstance(parent, dict):
        parent[f"x{rng.randrange(99)}"] = 1
        return f"a key added beside {path}", None
    models = data.get("models") if isinstance(data, dict) else None
    entries = (
        [e for e in models.values() if isinstance(e, dict)] if isinstance(models, dict) else []
    )
    if op < 0.32 and entries:
        facts = rng.choice(entries).get("facts", {})
        if isinstance(facts, dict) and isinstance(facts.get("layers"), list):
            n = rng.choice([0, 1, 511, 512, 513, 5000])
            facts["layers"] = (facts["layers"] * 5000)[:n] if facts["layers"] else []
            return f"layers made {n} long", None
    described, value = _value(rng)
    parent[key] = value
    raw = rng.choice(RAW_VALUES) if value == RAW else None
    return f"{path} = {raw[:20] if raw else described}", raw


def _text(data: Any, raw: str | None, rng: random.Random) -> tuple[str, str]:
    header = "# a lock file\n"
    if raw is None and rng.random() < 0.25:
        return "old YAML", dump_yaml(data, header)
    text = header + json.dumps(data, indent=1)
    if raw is not None:
        text = text.replace(json.dumps(RAW), raw)
    roll = rng.random()
    if roll < 0.08:
        cut = rng.randrange(len(text))
        return f"JSON cut at {cut}", text[:cut]
    if roll < 0.14:
        data_bytes = bytearray(text.encode())
        for _ in range(rng.randint(1, 5)):
            data_bytes[rng.randrange(len(data_bytes))] = rng.randrange(256)
        return "JSON with flipped bytes", data_bytes.decode("utf-8", "replace")
    if roll < 0.18:
        return "JSON with a duplicate key", text.replace(
            '"version": 1', '"version": 1, "version": 1'
        )
    return "JSON", text


def _write(work: Path, *, desired: str, lock: str, argv: list[str]) -> list[str]:
    (work / "desired.yaml").write_text(desired)
    (work / "desired.lock.yaml").write_text(lock, errors="surrogatepass")
    return list(argv)


def _cases(count: int) -> list[Case]:
    desired = (
        (ROOT / "desired" / "workstation.yaml").read_text().replace("    required: true\n", "")
    )
    lock_text = (ROOT / "desired" / "workstation.lock.yaml").read_text()
    original = json.loads("".join(line for line in lock_text.splitlines(True) if line[:1] != "#"))
    out = []
    for index in range(count):
        rng = random.Random(SEED * 3_000_017 + index)
        data = json.loads(json.dumps(original))
        what = [_mutate(data, rng) for _ in range(rng.choice([1, 1, 2, 3]))]
        raws = [raw for _w, raw in what if raw is not None]
        form, text = _text(data, raws[0] if raws else None, rng)
        for extra in raws[1:]:
            text = text.replace(json.dumps(RAW), extra, 1)
        argv = rng.choice(COMMANDS)
        label = f"seed {SEED} #{index}: {form}; " + "; ".join(w for w, _raw in what)
        write = functools.partial(_write, desired=desired, lock=text, argv=argv)
        out.append(Case(label, write, names="desired.lock.yaml"))
    return out


def test_mutated_lock_files_end_in_one_message(tmp_path: Path) -> None:
    campaign = run_campaign("lock", _cases(scaled(250)), tmp_path)
    assert campaign.failures == []
