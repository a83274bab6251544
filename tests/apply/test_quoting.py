"""Quoting for systemd units and environment files: what each filter writes, and what it
refuses. Whole units go through `systemd-analyze verify` in test_systemd.py."""

from __future__ import annotations

import pytest

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
