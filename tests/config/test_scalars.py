"""Plain scalars: what they mean, and the texts no file may hold."""

from __future__ import annotations

import math

import pytest

from reconciler.config.scalars import MAX_DIGITS, ScalarProblem, escaped, resolve_plain


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("8_192", 8192),
        ("-0x10", -16),
        ("0b" + "1" * 4 * MAX_DIGITS, 2 ** (4 * MAX_DIGITS) - 1),
        ("9" * MAX_DIGITS, 10**MAX_DIGITS - 1),
        ("1e308", 1e308),
        ("-.inf", -math.inf),
        ("yes", "yes"),  # YAML 1.2: a string
        ("~", None),
    ],
)
def test_what_plain_scalars_mean(text: str, value: object) -> None:
    assert resolve_plain(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9" * 4301, "a number of 4301 digits is larger than any value here"),
        ("0x" + "f" * 41, "a number of 41 digits is larger than any value here"),
        ("0." + "1" * 60, "a number of 61 digits is larger than any value here"),
        ("1e400", "1e400 is too large for a number (the largest is about 1.8e308)"),
        ("-1_0e999", "-1_0e999 is too large for a number"),
    ],
)
def test_numbers_no_file_needs_are_refused(text: str, message: str) -> None:
    with pytest.raises(ScalarProblem, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        resolve_plain(text)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("chat", "chat"),
        ("é", "é"),
        ("a\x1b[31mb", "a\\x1b[31mb"),
        ("\ud800x", "\\ud800x"),
        ("x" * 100, "x" * 57 + "..."),
    ],
)
def test_escaped_text_is_always_printable(text: str, shown: str) -> None:
    assert escaped(text) == shown
    assert escaped(text).encode("utf-8")
