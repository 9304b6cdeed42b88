"""accept(): the raw bytes and envelope are committed before anyone is told "stored"."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailgate.config import DatabaseSettings
from mailgate.daemon.runtime import Runtime
from mailgate.errors import PermanentError, TemporaryError
from mailgate.ingest.accept import Envelope, Incoming, accept, accept_many, sniff_message_id
from mailgate.store.db import make_engine, make_sessions
from mailgate.store.models import InboundMessage
from tests.support import make_mail

ENV = Envelope("jan@customer.example", ("support@helpdesk.example",), "127.0.0.1:5000")


def test_accept_stores_raw_bytes_and_envelope(rt: Runtime) -> None:
    raw = make_mail(message_id="<abc@customer.example>")
    result = accept(rt.sessions, raw, ENV, "smtp", clock=rt.clock)
    assert not result.duplicate
    with rt.sessions() as s:
        row = s.get_one(InboundMessage, result.inbound_id)
        assert row.raw == raw
        assert row.sha256 == hashlib.sha256(raw).hexdigest()
        assert row.mail_from == "jan@customer.example"
        assert row.rcpt_to == ["support@helpdesk.example"]
        assert row.peer == "127.0.0.1:5000"
        assert row.status == "received"
        assert row.message_id == "abc@customer.example"
        assert row.received_at == rt.clock()


def test_same_source_ref_is_stored_once(rt: Runtime) -> None:
    raw = make_mail()
    first = accept(rt.sessions, raw, ENV, "maildir", source_ref="maildir:/x:1")
    again = accept(rt.sessions, raw, ENV, "maildir", source_ref="maildir:/x:1")
    assert again.duplicate and again.inbound_id == first.inbound_id
    batch = accept_many(
        rt.sessions,
        [
            Incoming(raw, ENV, "mbox", "mbox:/y:0"),
            Incoming(raw, ENV, "mbox", "mbox:/y:0"),
            Incoming(raw, ENV, "mbox", "mbox:/x:1"),
        ],
    )
    assert [r.duplicate for r in batch] == [False, True, False]
    assert batch[0].inbound_id == batch[1].inbound_id
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(InboundMessage)) == 3


def test_empty_message_is_refused(rt: Runtime) -> None:
    with pytest.raises(PermanentError, match="empty-message"):
        accept(rt.sessions, b"", ENV, "pipe")


def test_locked_sqlite_gives_a_temporary_error_then_recovers(tmp_path: Path) -> None:
    from mailgate.store.migrate import upgrade

    url = f"sqlite:///{tmp_path}/locked.db"
    engine = make_engine(DatabaseSettings(url=url, busy_timeout_ms=200))
    upgrade(engine)
    sessions = make_sessions(engine)
    blocker = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(TemporaryError, match="database unavailable"):
            accept(sessions, make_mail(), ENV, "smtp")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert not accept(sessions, make_mail(), ENV, "smtp").duplicate
    engine.dispose()


def test_sniff_message_id_handles_folding_and_absence() -> None:
    assert sniff_message_id(b"Subject: x\r\nMessage-ID:\r\n <a.b@c>\r\n\r\nbody") == "a.b@c"
    assert sniff_message_id(b"Subject: x\r\n\r\nMessage-ID: <not@header>\r\n") is None
