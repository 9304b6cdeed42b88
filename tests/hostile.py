"""Hostile and broken messages, built deterministically for the ingest tests.

Each is something real MTAs hand over: mail without a Message-ID, raw 8-bit bytes in
headers, charsets nobody declared or knows, empty bodies, MIME cut off mid-part, a
To: with 10 000 addresses (quadratic in the stdlib parser), 200-deep multipart nesting
(RecursionError in naive walkers), duplicated From headers, and plain binary noise.
"""

from __future__ import annotations

import random

BASE = (
    b"From: Jan <jan@customer.example>\r\n"
    b"To: support@helpdesk.example\r\n"
    b"Date: Mon, 23 Nov 2026 08:00:00 +0000\r\n"
)


def samples() -> dict[str, bytes]:
    rnd = random.Random(7)
    deep_open = b"".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode()
        for i in range(200)
    )
    return {
        "no-message-id": BASE + b"Subject: no id\r\n\r\nhello\r\n",
        "8bit-junk-headers": BASE
        + b"Message-ID: <junk@customer.example>\r\nSubject: \xff\xfe\xc3(\x80 awaria\r\n"
        b"X-Weird: \x00\x01\x02\r\n\r\nbody \xe9\xe8\r\n",
        "unknown-charset": BASE
        + b"Message-ID: <cs@customer.example>\r\nSubject: =?x-unknown?q?abc?=\r\n"
        b"Content-Type: text/plain; charset=x-unknown\r\n\r\n\xd0\xbf\xd1\x80\xd0\xb8\r\n",
        "undeclared-koi8r": BASE
        + b"Message-ID: <koi@customer.example>\r\nSubject: test\r\n\r\n"
        + "Сервер не работает".encode("koi8-r")
        + b"\r\n",
        "empty-body": BASE + b"Message-ID: <empty@customer.example>\r\nSubject: empty\r\n\r\n",
        "headers-only-no-blank-line": BASE + b"Subject: only headers\r\n",
        "truncated-mime": BASE
        + b"Message-ID: <trunc@customer.example>\r\nSubject: cut\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n--XX\r\n'
        b"Content-Type: text/plain\r\n\r\nfirst part\r\n--XX\r\n"
        b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLj",
        "to-10000-addresses": BASE.replace(
            b"To: support@helpdesk.example",
            # Folded as an MTA would, so no line breaks the SMTP 1000-octet limit.
            b"To: " + b",\r\n ".join(f"u{i}@example.com".encode() for i in range(10_000)),
        )
        + b"Message-ID: <many@customer.example>\r\nSubject: many\r\n\r\nhi\r\n",
        "deep-nesting": BASE
        + b"Message-ID: <deep@customer.example>\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
        + deep_open
        + b"Content-Type: text/plain\r\n\r\nbottom\r\n",
        "two-from-headers": BASE
        + b"From: attacker@evil.example\r\nMessage-ID: <two@customer.example>\r\n"
        b"Subject: two froms\r\n\r\nx\r\n",
        "no-from": b"To: support@helpdesk.example\r\nSubject: anonymous\r\n\r\nwho am I\r\n",
        # Line breaks kept as CRLF so the noise cannot end the SMTP DATA phase early.
        "binary-noise": b"\r\n".join(
            bytes(rnd.choice([b for b in range(256) if b not in (10, 13)]) for _ in range(76))
            for _ in range(54)
        ),
    }


def _folded(name: bytes, parts: list[bytes], sep: bytes = b"") -> bytes:
    """One header made of many parts, folded so that no line passes SMTP's limit."""
    return name + b": " + (sep + b"\r\n ").join(parts) + b"\r\n"


def worse() -> dict[str, bytes]:
    """Nastier than ``samples``: attacks on the parser's cost and on identity checks."""
    mid = b"MIME-Version: 1.0\r\n"
    return {
        "encoded-word-bomb": BASE.replace(b"From: Jan <jan@customer.example>\r\n", b"")
        + b"From: jan@customer.example\r\nMessage-ID: <ew@customer.example>\r\n"
        + _folded(b"Subject", [b"=?utf-8?q?a=C5=82?="] * 4_000)
        + b"\r\nbody\r\n",
        "header-section-over-100k": BASE
        + b"Message-ID: <big-head@customer.example>\r\nSubject: big head\r\n"
        + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 900) for i in range(130))
        + b"\r\nbody\r\n",
        "ambiguous-from-angle": BASE.replace(
            b"From: Jan <jan@customer.example>",
            b"From: victim@customer.example<attacker@evil.example>",
        )
        + b"Message-ID: <amb@customer.example>\r\nSubject: ambiguous\r\n\r\nx\r\n",
        "from-with-two-addresses": BASE.replace(
            b"From: Jan <jan@customer.example>",
            b"From: jan@customer.example, attacker@evil.example",
        )
        + b"Message-ID: <twoaddr@customer.example>\r\nSubject: two\r\n\r\nx\r\n",
        "nul-bytes-everywhere": BASE
        + b"Message-ID: <nul@customer.example>\r\nSubject: a\x00b\r\n\r\n"
        + (b"\x00" * 76 + b"\r\n") * 50,
        "broken-base64": BASE
        + b"Message-ID: <b64@customer.example>\r\nSubject: b64\r\n"
        + mid
        + b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + b"!!!!****====\xff\xfe====\r\n" * 50,
        "empty-boundary": BASE
        + b"Message-ID: <eb@customer.example>\r\nSubject: eb\r\n"
        + mid
        + b'Content-Type: multipart/mixed; boundary=""\r\n\r\n--\r\n\r\nx\r\n--\r\n--\r\n--\r\n',
        "rfc2231-continuation-bomb": BASE
        + b"Message-ID: <2231@customer.example>\r\nSubject: params\r\n"
        + mid
        + b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n'
        + b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n"
        + b"".join(b" filename*%d*=utf-8''%%2E%%2E%%2F%d;\r\n" % (i, i) for i in range(3000))
        + b" size=1\r\n\r\nAAAA\r\n--B--\r\n",
        "html-nesting-bomb": BASE
        + b"Message-ID: <html@customer.example>\r\nSubject: html\r\n"
        + mid
        + b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        + b"\r\n".join([b"<div>" * 150] * 400)
        + b"\r\n<script>alert(1)</script>\r\n",
        "path-traversal-filename": BASE
        + b"Message-ID: <path@customer.example>\r\nSubject: path\r\n"
        + mid
        + b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n'
        + b"Content-Type: text/plain\r\n\r\nsee attached\r\n--B\r\n"
        + b"Content-Type: application/octet-stream\r\n"
        + b'Content-Disposition: attachment; filename="../../../../etc/cron.d/x"\r\n'
        + b"Content-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--B--\r\n",
    }
