"""text/enriched and text/richtext bodies read as plain text."""

from __future__ import annotations

import email

from mailgate.parse.enriched import enriched_to_text, richtext_to_text
from mailgate.parse.payload import decoded_payload


def test_enriched_commands_params_and_line_folding() -> None:
    text = "<bold>Hi</bold>\nthere\n\n<<x> <param>ff</param>y\n\n\nz"
    assert enriched_to_text(text) == "Hi there\n<x> y\n\nz"


def test_enriched_on_a_long_run_of_brackets_is_linear() -> None:
    assert enriched_to_text("<" * 100_001) == "<" * 50_000 + "<"


def test_richtext_breaks_only_at_nl() -> None:
    assert richtext_to_text("one\ntwo<nl>three <lt>4<bold>!</bold>") == "one two\nthree <4!"


def test_quoted_printable_forgives_blanks_after_a_soft_break() -> None:
    raw = b"Content-Transfer-Encoding: quoted-printable\n\nab=  \ncd=\t\nef=20\n=c5=82\n"
    part = email.message_from_bytes(raw)
    assert decoded_payload(part) == b"abcdef \n\xc5\x82\n"
