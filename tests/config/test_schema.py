"""The committed JSON Schemas equal what the models produce, and accept the examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.commands.schema import schema_of
from tests.examples import desired_examples

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", ["desired", "profile"])
def test_committed_schema_is_current(kind: str) -> None:
    committed = json.loads((ROOT / f"{kind}.schema.json").read_text())
    assert committed == schema_of(kind), f"run `make schema` to regenerate {kind}.schema.json"


def test_schema_knows_every_model_key() -> None:
    schema = schema_of("desired")
    model = schema["$defs"]["ModelSpec"]
    assert model["additionalProperties"] is False
    assert {"name", "backend", "gguf", "priority", "ctx", "cache_type", "pin", "vram_mib"} <= set(
        model["properties"]
    )
    assert schema["required"] == ["version"]


@pytest.mark.parametrize(("kind", "folder"), [("desired", "desired"), ("profile", "profiles")])
def test_examples_validate_against_the_committed_schema(kind: str, folder: str) -> None:
    import jsonschema
    from ruamel.yaml import YAML

    schema = json.loads((ROOT / f"{kind}.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    files = desired_examples() if kind == "desired" else sorted((ROOT / folder).glob("*.yaml"))
    assert files
    for path in files:
        errors = [e.message for e in validator.iter_errors(YAML(typ="safe").load(path))]
        assert errors == [], path


def test_the_schema_catches_what_an_editor_should_flag() -> None:
    import jsonschema

    schema = json.loads((ROOT / "desired.schema.json").read_text())
    doc = {"version": 1, "models": [{"name": "chat", "priorty": 1, "ctx": "8k"}]}
    messages = sorted(e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(doc))
    assert len(messages) == 2
    assert any("priorty" in m for m in messages)
    assert any("'8k'" in m for m in messages)
