"""A JSON lock file's problems, located without the YAML reader, and bounded."""

from __future__ import annotations

import json

import pytest

from reconciler.errors import ConfigErrors
from reconciler.lockfile import parse_lock

AGAIN = "run `reconcile lock` to write it again"
GOOD = {
    "version": 1,
    "models": {
        "chat": {
            "gguf": "m.gguf",
            "facts": {
                "architecture": "llama",
                "known": True,
                "n_embd": 64,
                "n_vocab": 260,
                "n_ctx_train": 4096,
                "head_dim_k": 16,
                "head_dim_v": 16,
                "layers": [
                    {"bytes_host": 1024, "bytes_cuda": 1024, "n_head": 4, "n_head_kv": 2},
                    {"bytes_host": 1024, "bytes_cuda": 1024, "n_head": 4, "n_head_kv": 2},
                ],
                "token_embd_bytes": 4096,
                "output_norm_host": 256,
                "output_norm_cuda": 256,
                "head_bytes_host": 4096,
                "head_bytes_cuda": 4096,
                "tied_output": False,
                "file_size": 20000,
                "fingerprint": "ab" * 32,
            },
        }
    },
}


def text_of(data: object, header: str = "# a lock\n# file\n") -> str:
    return header + json.dumps(data, indent=1)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        parse_lock(text, "x.lock.yaml")
    return [e.render() for e in info.value.errors]


def test_a_valid_lock_with_a_comment_added_after_it() -> None:
    lock = parse_lock(text_of(GOOD) + "\n# edited by hand\n\n", "x.lock.yaml")
    assert lock.models["chat"].facts.n_layer == 2


def test_a_value_that_does_not_validate_is_located_in_the_json() -> None:
    data = json.loads(json.dumps(GOOD))
    data["models"]["chat"]["facts"]["layers"][1]["bytes_cuda"] = -90979
    text = text_of(data)
    line, col = next(
        (i, t.index("-90979") + 1) for i, t in enumerate(text.splitlines(), 1) if "-90979" in t
    )
    assert problems(text) == [
        f"x.lock.yaml:{line}:{col}: models.chat.facts.layers[1].bytes_cuda: input should be "
        "greater than or equal to 0"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '# c\n{"version": 1,\n "models": {',
            "x.lock.yaml:3:13: JSON syntax error: Expecting property name enclosed in double "
            f"quotes; {AGAIN}",
        ),
        (
            '{"version": 1, "models": {}}\nmodels: 3\n',
            f"x.lock.yaml:2:1: JSON syntax error: Extra data; {AGAIN}",
        ),
        (
            '{"version": 1, "version": 1, "models": {}}',
            f'x.lock.yaml:1:16: duplicate key "version"; {AGAIN}',
        ),
        (
            '{"models": {"a": {"gguf": "x"}, "b": {"gguf": "y", "facts": {}, "gguf": "z"}}}',
            f'x.lock.yaml:1:65: duplicate key "gguf"; {AGAIN}',
        ),
        (
            '{"version": ' + "9" * 5000 + ', "models": {}}',
            f"x.lock.yaml:1:13: a number of 5000 digits; {AGAIN}",
        ),
        (
            '{"models": ' + "[" * 100_000 + "]" * 100_000 + "}",
            f"x.lock.yaml:1:1: nested more deeply than a lock file ever is; {AGAIN}",
        ),
    ],
    ids=[
        "cut short",
        "YAML after it",
        "duplicate key",
        "duplicate key in a later object",
        "5000 digits",
        "deep nesting",
    ],
)
def test_broken_json_is_one_located_problem(text: str, message: str) -> None:
    assert problems(text) == [message]


def test_thousands_of_wrong_layers_are_listed_briefly() -> None:
    """Each listed problem is located by a walk of the text: only the first 20 are."""
    data = json.loads(json.dumps(GOOD))
    data["models"]["chat"]["facts"]["layers"] = [{"bytes_host": -1}] * 500
    found = problems(text_of(data))
    assert len(found) == 21
    assert found[0] == "x.lock.yaml: and 1981 more problems like these"
