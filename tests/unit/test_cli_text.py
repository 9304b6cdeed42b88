"""Text views escape what a mail could use to drive the operator's terminal."""

from __future__ import annotations

from mailgate.cli import text


def test_control_characters_are_shown_not_obeyed() -> None:
    hostile = "Invoice\x1b]0;pwned\x07\x00 paid\u202egpj.exe\x9b2J"
    assert text.line(hostile) == "Invoice\\x1b]0;pwned\\x07\\x00 paid\\u202egpj.exe\\x9b2J"
    assert text.line("two\nlines\tand tab") == "two\\x0alines\\x09and tab"
    assert text.block("line one\r\nline two\tx\x1b[2J") == "line one\nline two\tx\\x1b[2J"
    assert text.line("Zażółć gęślą jaźń — ok") == "Zażółć gęślą jaźń — ok"
    assert text.line(None) == "" and text.line(7) == "7"
