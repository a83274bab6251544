"""Property: whatever a user does to a valid file, the loader returns a valid spec or raises
`ConfigErrors`, and never anything else (no traceback for anything a user can cause)."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from reconciler.config.desired import Desired
from reconciler.config.loader import parse_desired
from reconciler.errors import ConfigErrors
from tests.examples import desired_examples

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [p.read_text() for p in desired_examples()]
_yaml = YAML(typ="safe", pure=True)
BASES = [_yaml.load(text) for text in EXAMPLES]

KEYS = sorted(
    {"name", "backend", "gguf", "model", "argv", "priority", "ctx", "parallel", "cache_type"}
    | {"flash_attn", "gpu_layers", "split", "pin", "host", "port", "required", "fallbacks"}
    | {"env", "extra_args", "vram_mib", "policy", "headroom", "gpus", "models", "version"}
    | {"thermal", "placement", "reserve_mib", "reserve_fraction", "priorty", "<<"}
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["all", "auto", "q8_0", "on", "off", "chat", "${env.HOME}", "${env.NOPE}"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    ),
    max_leaves=12,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += paths(value, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        targets = [p for p in paths(doc) if p]
        if not targets:
            return draw(values)
        path = draw(st.sampled_from(targets))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add", "duplicate"]))
        if action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = draw(values)
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
    return doc


def dump(doc: Any) -> str:
    out = io.StringIO()
    YAML(typ="safe", pure=True).dump(doc, out)
    return out.getvalue()


def load(text: str) -> Desired | ConfigErrors:
    try:
        return parse_desired(text, "fuzz.yaml", Path("/base"), {"HOME": "/home/u"}).spec
    except ConfigErrors as exc:
        for error in exc.errors:
            assert error.render().startswith("fuzz.yaml")
            assert "Traceback" not in error.render()
        return exc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_structural_mutations_give_a_spec_or_config_errors(doc: Any) -> None:
    assert isinstance(load(dump(doc)), Desired | ConfigErrors)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(EXAMPLES),
    st.integers(min_value=0, max_value=4000),
    st.integers(min_value=0, max_value=20),
    st.text(alphabet=" \t\n:-[]{}&*!|>'\"#%@`,?", max_size=6),
)
def test_text_mutations_give_a_spec_or_config_errors(
    text: str, at: int, cut: int, insert: str
) -> None:
    at = at % (len(text) + 1)
    assert isinstance(load(text[:at] + insert + text[at + cut :]), Desired | ConfigErrors)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_give_a_spec_or_config_errors(raw: bytes) -> None:
    text = raw.decode("utf-8", errors="replace")
    assert isinstance(load(text), Desired | ConfigErrors)
