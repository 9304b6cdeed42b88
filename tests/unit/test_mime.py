"""mime.display_filename: what we show of a sender's file name."""

from __future__ import annotations

import email

import pytest

from mailgate import parse as parse_module
from mailgate.mime import decoded_payload, display_filename
from mailgate.parse import message_from_bytes


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
