"""Quoting for systemd units and environment files: what each filter writes, and what it
refuses. Whole units go through `systemd-analyze verify` in test_systemd.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.apply.quoting import (
    QuotingError,
    env_file_text,
    json_arg,
    systemd_arg,
    systemd_command,
    systemd_env,
    systemd_path,
    systemd_text,
)


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("--port", "--port"),
        ("/models/chat.gguf", "/models/chat.gguf"),
        ("", '""'),
        ("two words", '"two words"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("it's", '"it\'s"'),
        ("100%", '"100%%"'),
        ("%h", '"%%h"'),
        ("$HOME", '"$$HOME"'),
        ("${PATH}", '"$${PATH}"'),
        ("back\\slash", '"back\\\\slash"'),
        ("new\nline", '"new\\nline"'),
        ("tab\there", '"tab\\there"'),
        ("bell\x07", '"bell\\x07"'),
        (";", '";"'),
        ("é 模型", '"é 模型"'),
    ],
)
def test_an_exec_argument_is_one_word_that_means_itself(value: str, written: str) -> None:
    assert systemd_arg(value) == written


def test_a_command_quotes_each_argument_and_checks_the_program() -> None:
    assert systemd_command(["/opt/my bin/llama-server", "-m", "a b.gguf"]) == (
        '"/opt/my bin/llama-server" -m "a b.gguf"'
    )
    assert systemd_command(["/opt/100%/x"]) == '"/opt/100%%/x"'
    assert systemd_command(["llama-server", "-h"]) == "llama-server -h"  # systemd looks it up
    for bad in ("/opt/'q'/x", '/opt/"q"/x', "/opt/$x/y", "/opt/a\\b", "/opt/a\nb", "rel/x"):
        with pytest.raises(QuotingError):
            systemd_command([bad])
    with pytest.raises(QuotingError, match="empty"):
        systemd_command([])
    with pytest.raises(QuotingError, match="NUL"):
        systemd_command(["/bin/x", "a\0b"])


def test_an_environment_assignment_keeps_dollars_and_doubles_percents() -> None:
    assert systemd_env("A=b") == "A=b"
    assert systemd_env('A=b c%d$x"\n') == '"A=b c%%d$x\\"\\n"'
    with pytest.raises(QuotingError):
        systemd_env("no assignment")
    with pytest.raises(QuotingError):
        systemd_env("BAD NAME=x")


def test_a_bare_path_doubles_percents_and_refuses_what_would_break_the_line() -> None:
    assert systemd_path("/home/a b/100%/state") == "/home/a b/100%%/state"
    for bad in ("/a\nb", " /a", "/a ", "/a\\", "relative"):
        with pytest.raises(QuotingError):
            systemd_path(bad)


def test_free_text_stays_on_one_line() -> None:
    assert systemd_text("a\nb 100%") == "a b 100%%"


def test_json_arg_writes_strings_and_numbers_and_refuses_the_rest() -> None:
    assert json_arg('a "b"\n') == '"a \\"b\\"\\n"'
    assert json_arg(8192) == '"8192"'
    assert json_arg("é") == '"é"'
    for bad in (None, True, [1], {"a": 1}):
        with pytest.raises(QuotingError):
            json_arg(bad)


def test_an_environment_file_escapes_what_its_double_quotes_need() -> None:
    text = env_file_text({"TOKEN": 'a"b\\c$d`e\nf %g', "PLAIN": "x"}, "secrets of chat")
    assert text == '# secrets of chat\nTOKEN="a\\"b\\\\c\\$d\\`e\nf %g"\nPLAIN="x"\n'
    with pytest.raises(QuotingError):
        env_file_text({"BAD NAME": "x"})


# An oracle written from systemd.syntax(7) and systemd.service(5), independent of the code
# under test: how systemd reads an `ExecStart=` or `Environment=` value back into words.
C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
C_ESCAPES |= {"s": " ", "\\": "\\", '"': '"', "'": "'"}


def specifiers(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        if value[i] == "%":
            assert value[i + 1 : i + 2] == "%", f"a specifier %{value[i + 1 : i + 2]} would expand"
            out.append("%")
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def words(value: str) -> list[str]:
    """Split on white space outside quotes; C escapes inside and outside quotes."""
    out: list[str] = []
    word: list[str] | None = None
    quote = ""
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            nxt = value[i + 1]
            if nxt == "x":
                ch, i = chr(int(value[i + 2 : i + 4], 16)), i + 4
            else:
                ch, i = C_ESCAPES[nxt], i + 2
            word = (word or []) + [ch]
            continue
        if quote:
            if ch == quote:
                quote = ""
            else:
                word = (word or []) + [ch]
        elif ch in "\"'":
            quote, word = ch, word or []
        elif ch in " \t":
            if word is not None:
                out.append("".join(word))
            word = None
        else:
            word = (word or []) + [ch]
        i += 1
    assert not quote, "an unclosed quote"
    if word is not None:
        out.append("".join(word))
    return out


def exec_argv(value: str) -> list[str]:
    """`ExecStart=value` as the argv the process gets (`$$` is `$`; a lone `$` expands)."""
    out = []
    for word in words(specifiers(value)):
        assert "$" not in word.replace("$$", ""), f"{word!r} would expand a variable"
        out.append(word.replace("$$", "$"))
    return out


TEXT = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)))


@given(st.lists(TEXT, max_size=5))
def test_every_argument_reads_back_as_itself(args: list[str]) -> None:
    argv = ["/opt/my bin/100% é/llama-server", *args]
    assert exec_argv(systemd_command(argv)) == argv


@given(TEXT)
def test_every_environment_value_reads_back_as_itself(value: str) -> None:
    assert words(specifiers(systemd_env(f"NAME={value}"))) == [f"NAME={value}"]


def env_file_values(text: str) -> dict[str, str]:
    """systemd's reading of `NAME="value"` lines (double quotes; `\\` escapes `"\\`$`)."""
    out: dict[str, str] = {}
    i = 0
    while i < len(text):
        if text[i] == "#":
            i = text.index("\n", i) + 1
            continue
        eq = text.index("=", i)
        name = text[i:eq]
        assert text[eq + 1] == '"'
        j, value = eq + 2, []
        while text[j] != '"':
            if text[j] == "\\":
                j += 1
                assert text[j] in '"\\`$', "an escape systemd would keep as two characters"
            value.append(text[j])
            j += 1
        out[name] = "".join(value)
        assert text[j + 1] == "\n"
        i = j + 2
    return out


@given(st.dictionaries(st.sampled_from(["A", "TOKEN", "HF_TOKEN"]), TEXT))
def test_every_secret_reads_back_from_its_environment_file(env: dict[str, str]) -> None:
    assert env_file_values(env_file_text(env, "header\nlines")) == env
