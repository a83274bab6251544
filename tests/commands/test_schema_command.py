from __future__ import annotations

import json

import pytest

from reconciler.cli import main


@pytest.mark.parametrize("kind", ["desired", "profile"])
def test_schema_prints_json(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", kind]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["additionalProperties"] is False
