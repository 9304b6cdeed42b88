"""Hypothesis strategies for hostile mail: real messages from tests/data/mail and
tests/hostile.py, mutated at the byte and the header level, and messages generated
from scratch out of nasty header and MIME pieces."""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

from tests.hostile import samples, worse

DATA = Path(__file__).resolve().parent.parent / "data" / "mail"
# The HTML nesting bomb is a seed too: its mutations must not find a way past the
# depth check into nh3's quadratic tree builder (the hang alarm would catch it).
SEEDS: list[bytes] = [p.read_bytes() for p in sorted(DATA.glob("*.eml"))] + [
    *samples().values(),
    *worse().values(),
]

# Header lines that have broken parsers or identity checks somewhere.
NASTY_HEADERS = [
    b"From: victim@customer.example<attacker@evil.example>",
    b"From: a@b.example, c@d.example",
    b"From: =?utf-8?b?dmljdGltQGN1c3RvbWVyLmV4YW1wbGU=?= <x@evil.example>",
    b'From: "victim@customer.example" <attacker@evil.example>',
    b"From: <>",
    b"From: \xff\xfe@\x80.example",
    b"Sender: boss@customer.example",
    b"Reply-To: attacker@evil.example",
    b"Auto-Submitted: auto-replied",
    b"Precedence: bulk",
    b"List-Id: <x.lists.example>",
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=R",
    b"Content-Type: multipart/mixed; boundary=",
    b"Content-Type: text/plain; charset=utf-7",
    b"Content-Type: text/html; charset=x-nothing",
    b"Content-Transfer-Encoding: quoted-printable",
    b"Content-Transfer-Encoding: base64",
    b"Content-Transfer-Encoding: x-uuencode",
    b"Subject: =?utf-8?q?=E2=80=AE?= [#1] Re: ticket",
    b"Subject: " + b"=?iso-8859-2?q?=B1?=" * 200,
    b"In-Reply-To: <t.1.abc@helpdesk.example>",
    b"References: " + b"<r@x> " * 300,
    b"Message-ID: <>",
    b"Message-ID: " + b"x" * 990,
    b"Authentication-Results: mx.helpdesk.example; dkim=pass header.d=customer.example",
    b"DKIM-Signature: v=1; a=rsa-sha256; d=customer.example; s=s; l=1; h=from; bh=; b=",
    b'Content-Disposition: attachment; filename="../../etc/passwd"',
    b"X-Auto-Response-Suppress: All",
    b"Date: Thu, 31 Feb 99999 25:61:61 +9999",
]
NASTY_BYTES = [b"\r\n", b"\n", b"\r", b"\x00", b"\xff", b"--", b"=?", b"?=", b":", b"<", b">"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed message after a handful of byte and header mutations."""
    raw = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "header", "truncate", "splice"]))
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[at] = draw(st.integers(0, 255))
        elif op == "insert":
            piece = draw(st.one_of(st.sampled_from(NASTY_BYTES), st.binary(max_size=40)))
            raw[at:at] = piece * draw(st.integers(1, 50))
        elif op == "delete":
            del raw[at : at + draw(st.integers(1, 200))]
        elif op == "header":
            raw[0:0] = draw(st.sampled_from(NASTY_HEADERS)) + b"\r\n"
        elif op == "truncate":
            del raw[at:]
        elif op == "splice":
            other = draw(st.sampled_from(SEEDS))
            raw[at:] = other[draw(st.integers(0, max(len(other) - 1, 0))) :]
    return bytes(raw)


@st.composite
def generated(draw: st.DrawFn) -> bytes:
    """A message built from scratch: random headers from the nasty set, a body of
    random text or bytes, sometimes a MIME tree."""
    headers = draw(st.lists(st.sampled_from(NASTY_HEADERS), max_size=8))
    if draw(st.booleans()):
        headers.insert(0, b"From: Jan <jan@customer.example>")
    text = draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")
    body = draw(st.one_of(st.just(text), st.binary(max_size=300)))
    if draw(st.booleans()):
        depth = draw(st.integers(1, 30))
        opening = b"".join(
            b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
            for i in range(depth)
        )
        body = opening + b"Content-Type: text/plain\r\n\r\n" + body
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


hostile_mail = st.one_of(mutated(), generated())
