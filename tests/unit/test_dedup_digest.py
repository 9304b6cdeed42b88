"""The dedup key's body digest is computed a piece at a time; it must stay the digest
of the whole body with CRLF read as LF, or keys stored earlier would stop matching."""

from __future__ import annotations

import hashlib
import random

import pytest

from mailgate.pipeline import gather, rawread


def whole(raw: bytes, start: int) -> str:
    return hashlib.sha256(raw[start:].replace(b"\r\n", b"\n")).hexdigest()


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 20])
def test_body_digest_matches_the_whole_body_digest(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rawread, "_DIGEST_CHUNK", chunk)
    rng = random.Random(chunk)
    # Runs of CR before LF land on every chunk boundary sooner or later.
    for raw in [b"", b"\r", b"\r\n", b"\r\r\n\r", b"a\r\nb\r\r\n\n\rc\r\n"] + [
        bytes(rng.choice(b"\r\r\nab") for _ in range(rng.randrange(60))) for _ in range(200)
    ]:
        for start in range(len(raw) + 1):
            assert rawread.digest_from(raw, start) == whole(raw, start), (raw, start)


def test_crlf_and_lf_copies_of_a_mail_share_a_dedup_key() -> None:
    from mailgate.parse import parse

    lf = b"From: a@b.example\nMessage-ID: <x@b.example>\n\nline one\nline two\n"
    crlf = lf.replace(b"\n", b"\r\n")
    key = gather.dedup_key(parse(lf), rawread.body_digest(lf))
    assert key is not None
    assert key == gather.dedup_key(parse(crlf), rawread.body_digest(crlf))
