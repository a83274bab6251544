"""The loader on valid files and on the corners of YAML: paths, env, merges, numbers, limits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.config.desired import Desired
from reconciler.config.loader import load_desired, parse_desired
from reconciler.config.yamlfile import MAX_BYTES, parse_yaml
from reconciler.errors import ConfigErrors
from tests.examples import desired_examples

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = desired_examples()


def messages(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        parse_desired(text, "d.yaml", Path("/base"), environ or {})
    return [e.render() for e in info.value.errors]


def parse(text: str, environ: dict[str, str] | None = None) -> Desired:
    return parse_desired(text, "d.yaml", Path("/base"), environ or {}).spec


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_are_valid_and_point_editors_at_the_schema(path: Path) -> None:
    loaded = load_desired(path)
    assert loaded.spec.models
    assert path.read_text().startswith("# yaml-language-server: $schema=../desired.schema.json\n")


def test_defaults_are_filled_in() -> None:
    spec = parse("version: 1\nmodels:\n  - {name: chat, gguf: m.gguf, port: 8081}\n")
    m = spec.models[0]
    assert (m.backend, m.ctx, m.parallel, m.cache_type, m.flash_attn) == (
        "llama.cpp",
        4096,
        1,
        "f16",
        "auto",
    )
    assert (m.gpu_layers, m.split, m.host, m.required) == ("all", "auto", "127.0.0.1", False)
    assert spec.policy.headroom.reserve_for(24576) == 2458  # 10 % beats 2048 MiB
    assert spec.policy.headroom.reserve_for(12288) == 2048
    assert spec.gpus is None


def test_relative_gguf_resolves_against_the_files_folder(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "desired.yaml"
    path.write_text(
        "version: 1\nmodels:\n"
        "  - {name: a, gguf: ../models/a.gguf, port: 1}\n"
        "  - {name: b, gguf: /abs/b.gguf, port: 2}\n"
    )
    spec = load_desired(path).spec
    assert spec.models[0].gguf == tmp_path / "conf" / ".." / "models" / "a.gguf"
    assert spec.models[1].gguf == Path("/abs/b.gguf")


def test_templates_and_llama_server_resolve_against_the_files_folder(tmp_path: Path) -> None:
    path = tmp_path / "desired.yaml"
    path.write_text("version: 1\ntemplates: my-templates\nllama_server: ~/bin/llama-server\n")
    spec = load_desired(path).spec
    assert spec.templates == tmp_path / "my-templates"
    assert spec.llama_server == Path.home() / "bin" / "llama-server"
    assert parse("version: 1\n").templates is None


def test_env_expansion_and_escape() -> None:
    spec = parse(
        "version: 1\nmodels:\n"
        "  - name: chat\n"
        "    gguf: ${env.MODELS}/chat.gguf\n"
        "    port: ${env.PORT}\n"
        "    extra_args: [--alias, '$${env.NOT_EXPANDED}']\n",
        {"MODELS": "/srv/m", "PORT": "8081"},
    )
    m = spec.models[0]
    assert m.gguf == Path("/srv/m/chat.gguf")
    assert m.port == 8081  # a plain scalar that expands to a number is a number
    assert m.extra_args == ("--alias", "${env.NOT_EXPANDED}")


def test_quoted_env_expansion_stays_a_string() -> None:
    assert messages(
        'version: 1\nmodels:\n  - name: chat\n    gguf: a.gguf\n    port: "${env.PORT}"\n',
        {"PORT": "8081"},
    ) == [
        'd.yaml:5:11: models[0].port: must be a TCP port between 1 and 65535, got "8081"; '
        "write the number without quotes"
    ]


def test_malformed_substitution_is_explained() -> None:
    assert messages(
        "version: 1\nmodels:\n  - name: c\n    gguf: ${MODELS}/a.gguf\n    port: 1\n"
    ) == [
        "d.yaml:4:11: models[0].gguf: unknown substitution ${MODELS}; write ${env.NAME} to "
        "read an environment variable, or $${ for a literal ${"
    ]


def test_yaml_merge_keys_share_settings() -> None:
    spec = parse(
        "version: 1\n"
        "models:\n"
        "  - &base {name: a, gguf: a.gguf, port: 1, ctx: 8192, cache_type: q8_0}\n"
        "  - {<<: *base, name: b, port: 2}\n"
    )
    assert [(m.name, m.port, m.ctx, m.cache_type) for m in spec.models] == [
        ("a", 1, 8192, "q8_0"),
        ("b", 2, 8192, "q8_0"),
    ]


@pytest.mark.parametrize(
    ("text", "value"),
    [("0x2000", 8192), ("0o20000", 8192), ("8_192", 8192), ("+8192", 8192)],
)
def test_yaml_integer_forms(text: str, value: int) -> None:
    spec = parse(f"version: 1\nmodels:\n  - {{name: a, gguf: a.gguf, port: 1, ctx: {text}}}\n")
    assert spec.models[0].ctx == value


@pytest.mark.parametrize(
    ("text", "got"),
    [
        ("8192.0", "8192.0"),
        ("true", "true"),
        (".nan", "nan"),
        ("'8192'", '"8192"; write the number without quotes'),
        ("~", "null"),
    ],
)
def test_ctx_rejects_what_is_not_an_integer(text: str, got: str) -> None:
    assert messages(
        f"version: 1\nmodels:\n  - name: a\n    gguf: a.gguf\n    port: 1\n    ctx: {text}\n"
    ) == [f"d.yaml:6:10: models[0].ctx: must be a positive integer, got {got}"]


def test_nan_never_reaches_a_fraction() -> None:
    assert messages("version: 1\npolicy: {headroom: {reserve_fraction: .nan}}\n") == [
        "d.yaml:2:39: policy.headroom.reserve_fraction: must be a fraction from 0 to below 1 "
        "(0.10 is 10 %), got nan"
    ]


def test_flash_attn_accepts_yaml_booleans() -> None:
    spec = parse("version: 1\nmodels:\n  - {name: a, gguf: a.gguf, port: 1, flash_attn: true}\n")
    assert spec.models[0].flash_attn == "on"


def test_alias_bomb_is_refused_without_exploding() -> None:
    lines = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    with pytest.raises(ConfigErrors) as info:  # the values past the bound are not read
        parse_yaml("\n".join(lines) + "\n", "bomb.yaml", environ={})
    assert [e.render() for e in info.value.errors] == [
        "bomb.yaml:2:34: a4[7][8][8][8][8]: more than 100000 values (aliases expanding?); no "
        "file of this kind needs so many"
    ]


def test_an_environment_variable_that_is_not_utf8_is_located(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`env XX=$'a\\xffb'`: Python holds the byte as a lone surrogate, which no file (and no
    digest) can encode; it is one located problem, not a traceback later on."""
    desired = tmp_path / "f.yaml"
    desired.write_text(
        "version: 1\nmodels:\n  - name: chat\n    gguf: /tmp/${env.XX}.gguf\n    port: 8081\n"
    )
    monkeypatch.setenv("XX", os.fsdecode(b"a\xffb"))
    assert main(["check", str(desired), "--profile", "rtx3090"]) == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        f"{desired}:4:11: models[0].gguf: environment variable XX is not UTF-8 text (used as "
        "${env.XX}); set it to UTF-8 text or write the value here"
    )


def test_a_fallback_may_share_its_models_port() -> None:
    spec = parse(
        "version: 1\nmodels:\n"
        "  - {name: a, gguf: a.gguf, port: 1, fallbacks: [b]}\n"
        "  - {name: b, gguf: b.gguf, port: 1, fallbacks: [c]}\n"
        "  - {name: c, gguf: c.gguf, port: 1}\n"
    )
    assert [m.port for m in spec.models] == [1, 1, 1]


def test_vllm_ollama_and_command_state_their_memory() -> None:
    spec = parse(
        "version: 1\nmodels:\n"
        "  - {name: v, backend: vllm, model: org/m, vram_mib: 9000, port: 1}\n"
        "  - {name: o, backend: ollama, model: 'llama3.1:8b', vram_mib: 6000}\n"
        "  - {name: c, backend: command, argv: [/bin/server, --port, 9], vram_mib: 100}\n"
    )
    assert spec.models[2].argv == ("/bin/server", "--port", "9")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, ": no such file; check the path"),
        (lambda p: p.mkdir(), ": is a directory; give the path of a YAML file"),
        (
            lambda p: p.write_bytes(b"version: 1\nname: \xff\xfe\n"),
            ":2:7: not UTF-8 text (byte 0xff); save the file as UTF-8",
        ),
        (lambda p: p.write_bytes(b"#" * (MAX_BYTES + 1)), ": is larger than 4 MiB"),
    ],
)
def test_unreadable_files(tmp_path: Path, setup: object, message: str) -> None:
    path = tmp_path / "d.yaml"
    setup(path)  # type: ignore[operator]
    with pytest.raises(ConfigErrors) as info:
        load_desired(path)
    assert str(info.value).startswith(f"{path}{message}")


def test_x_keys_hold_anchors_and_are_ignored() -> None:
    spec = parse(
        "version: 1\n"
        "x-qwen: &qwen {ctx: 16384, cache_type: q8_0, flash_attn: on}\n"
        "x-notes: [anything, {goes: here}]\n"
        "models:\n"
        "  - {<<: *qwen, name: chat, gguf: a.gguf, port: 8081}\n"
    )
    assert (spec.models[0].ctx, spec.models[0].cache_type) == (16384, "q8_0")


def test_a_merged_key_does_not_move_the_position_of_the_mappings_own_key() -> None:
    assert messages(
        "version: 1\n"
        "x-base: &base {ctx: 8192, port: 1}\n"
        "models:\n"
        "  - {<<: *base, name: a, gguf: a.gguf, ctx: big}\n"
    ) == ['d.yaml:4:45: models[0].ctx: must be a positive integer, got "big"']


def test_nested_merges_are_resolved_once_each() -> None:
    lines = ["version: 1", "x-0: &m0 {ctx: 2048}"]
    lines += [f"x-{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}, *m{i - 1}]}}" for i in range(1, 30)]
    lines += ["models:", "  - {<<: *m29, name: a, gguf: a.gguf, port: 1}"]
    assert parse("\n".join(lines) + "\n").models[0].ctx == 2048  # 3^29 merges walked naively


def test_a_surrogate_pair_written_as_two_escapes_is_one_character() -> None:
    spec = parse('version: 1\nmodels:\n  - {name: a, gguf: "\\ud83d\\ude00.gguf", port: 1}\n')
    assert spec.models[0].gguf is not None
    assert spec.models[0].gguf.name == "\U0001f600.gguf"
