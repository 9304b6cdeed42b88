"""The facts workers read a message's bytes by id (pipeline.rawread): the same bytes as
stored, a clear temporary error for an id that is not there, and no reader for a
database only the daemon can see."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from mailgate.errors import TemporaryError
from mailgate.ingest.accept import Envelope, accept
from mailgate.pipeline import claims
from mailgate.pipeline.rawread import RawReader, body_digest, raw_reader
from tests.conftest import make_runtime, make_settings
from tests.support import make_mail

ENV = Envelope("jan@customer.example", ("support@helpdesk.example",))


def test_a_worker_reads_the_stored_bytes_and_the_claim_only_the_head(
    db_url: str, tmp_path: Path
) -> None:
    rt = make_runtime(make_settings(db_url, tmp_path))
    try:
        raw = make_mail(body="x" * 70 + "\n" + "y" * (claims.HEAD_BYTES + 1000))
        stored = accept(rt.sessions, raw, ENV, "smtp")
        reader = raw_reader(db_url)
        assert reader is not None
        # What crosses the pipe to a worker is the URL, not the bytes.
        copy = pickle.loads(pickle.dumps(reader))
        assert copy(stored.inbound_id) == raw
        with pytest.raises(TemporaryError, match="not found"):
            copy(stored.inbound_id + 1000)
        [claimed] = claims.claim(rt, 10)
        assert claimed.head == raw[: claims.HEAD_BYTES]
    finally:
        rt.close()


def test_no_reader_for_a_database_in_memory() -> None:
    assert raw_reader("sqlite:///:memory:") is None
    assert raw_reader("sqlite://") is None
    assert raw_reader("sqlite:////var/lib/mailgate/mailgate.db") == RawReader(
        "sqlite:////var/lib/mailgate/mailgate.db"
    )


def test_the_body_digest_reads_crlf_as_lf_and_skips_the_header() -> None:
    lf = b"Subject: a\n\nline one\nline two\n"
    assert body_digest(lf) == body_digest(lf.replace(b"\n", b"\r\n"))
    assert body_digest(lf) == body_digest(b"Subject: other\n\nline one\nline two\n")
