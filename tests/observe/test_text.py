"""Text read from the machine, made printable."""

from __future__ import annotations

import pytest

from reconciler.observe.text import clean_text


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090"),
        (b"RTX \xff", "RTX \\xff"),
        ("RTX \udcff", "RTX \\xff"),  # as os.fsdecode and psutil decode the byte ff
        ("\ud800", "\\ud800"),  # a surrogate no decoder made
        ("a\x1b[31mred\x00\x9b", "a\\x1b[31mred\\x00\\x9b"),
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("größe", "größe"),
    ],
)
def test_machine_text_is_printable_utf8(raw: str | bytes, shown: str) -> None:
    assert clean_text(raw) == shown
    shown.encode("utf-8")
