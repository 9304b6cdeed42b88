"""mime.display_filename: what we show of a sender's file name."""

from __future__ import annotations

import pytest

from mailgate.mime import MAX_HTML_DEPTH, display_filename, html_depth_exceeds, sanitize_html


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


def test_an_html_nesting_bomb_is_refused_before_the_sanitizer() -> None:
    """60 000 unclosed <div>s cost nh3 (quadratic in depth, native code no alarm can
    stop) 7-13 s per message; the linear depth check refuses them in milliseconds."""
    defects: list[str] = []
    bomb = "<div>" * 60_000 + "<script>alert(1)</script>"
    assert sanitize_html(bomb, defects) is None  # nh3 never saw it: it returns text
    assert defects == ["html:too-deep"]


def test_ordinary_html_is_still_sanitized_and_flat_runs_do_not_count_as_depth() -> None:
    defects: list[str] = []
    nested = "<div>" * 50 + "<b onclick=x>hi</b><script>alert(1)</script>" + "</div>" * 50
    clean = sanitize_html(nested, defects)
    assert clean is not None and "hi" in clean
    assert "script" not in clean and "onclick" not in clean
    # Thousands of paragraphs and line breaks left open are flat, not deep.
    assert not html_depth_exceeds("<p>line<br>" * 5_000)
    assert not html_depth_exceeds("<div><span>x</span></div>" * 5_000)
    assert html_depth_exceeds("<div>" * (MAX_HTML_DEPTH + 1))
    assert not html_depth_exceeds("<div>" * MAX_HTML_DEPTH)
    assert defects == []
