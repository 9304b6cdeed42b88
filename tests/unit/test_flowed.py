"""format=flowed (RFC 3676): soft breaks joined, quotes kept per depth, fixed lines kept."""

from __future__ import annotations

import pytest

from mailgate.parse.flowed import unflow


@pytest.mark.parametrize(
    ("text", "delsp", "expected"),
    [
        ("one \ntwo \nthree\nfour", False, "one two three\nfour"),
        ("one \n\ntwo", False, "one \n\ntwo"),  # an empty line ends a paragraph
        ("Hal \nlo", True, "Hallo"),  # DelSp=yes: the soft break's space goes
        (" From me\n >x", False, "From me\n>x"),  # space-stuffing undone
        ("> a \n> b\nc", False, "> a b\nc"),
        ("> a \n>> b \n>> c\n", False, "> a \n>> b c\n"),  # a depth change ends it
        (">\n> x", False, ">\n> x"),
        ("text \n-- \nJan", False, "text \n-- \nJan"),
        ("text\n-- \nJan", False, "text\n-- \nJan"),  # the separator is never flowed
        ("tail \n", False, "tail \n"),
    ],
)
def test_unflow(text: str, delsp: bool, expected: str) -> None:
    assert unflow(text, delsp) == expected


def test_unflow_is_linear_on_a_long_flowed_paragraph() -> None:
    text = "word \n" * 100_000 + "end"
    assert unflow(text, delsp=False) == "word " * 100_000 + "end"
