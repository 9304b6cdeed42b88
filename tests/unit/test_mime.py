"""mime.display_filename: what we show of a sender's file name."""

from __future__ import annotations

import pytest

from mailgate.mime import display_filename


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\report.docx", "report.docx"),
        ("..", "attachment"),
        ("", "attachment"),
        ("a\x00b\r\nc.txt", "abc.txt"),
        ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
    ],
)
def test_display_filename(name: str, shown: str) -> None:
    assert display_filename(name) == shown
