"""mime.display_filename: what we show of a sender's file name."""

from __future__ import annotations

import email

import pytest

from mailgate.parse import message_from_bytes
from mailgate.parse import reader as parse_module
from mailgate.parse.mime import (
    MAX_HTML_DEPTH,
    decoded_payload,
    display_filename,
    html_depth_exceeds,
    sanitize_html,
)


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


BASE64_BODIES = [
    b"YWJjZGVm\r\nZ2g=\r\n",  # clean
    b"YWJjZGVm\nZ2g\n",  # missing padding
    b"YWJj!ZGVm\r\nZ2g=\r\n",  # a character outside the alphabet
    b"YWJj!ZGVm\r\nZ2g\r\n",  # both
    b"YWJjZ\r\n",  # one more than a multiple of four: undecodable
    b"YWJj\rZGVm\n\rZ2g=",  # bare CR and LF line breaks
    b"",
]


@pytest.mark.parametrize("body", BASE64_BODIES)
def test_decoded_payload_is_the_stdlib_decoding_with_its_defects(body: bytes) -> None:
    raw = (
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + body
    )
    ours, stdlib = message_from_bytes(raw), email.message_from_bytes(raw)
    assert decoded_payload(ours) == stdlib.get_payload(decode=True)
    assert [type(d) for d in ours.defects] == [type(d) for d in stdlib.defects]


def test_message_from_bytes_builds_the_stdlib_tree_across_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Chunks of 7 bytes split CRLFs, headers and boundaries everywhere.
    monkeypatch.setattr(parse_module, "_FEED_CHUNK", 7)
    raw = (
        b'From: a@b.example\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDzie\xc5\x84 dobry\r\n"
        b"--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"JVBERi0xLjQK\r\n--b--\r\n"
    )
    ours, stdlib = message_from_bytes(raw), email.message_from_bytes(raw)
    assert ours.as_bytes() == stdlib.as_bytes()
    assert [p.get_payload() for p in ours.walk()][1:] == [p.get_payload() for p in stdlib.walk()][
        1:
    ]
