"""Retention: raw mail and attachment bytes past the cut-off are emptied, the ticket
still reads whole; export hands over what is left as mbox."""

from __future__ import annotations

import contextlib
import mailbox
import sqlite3
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import select

from mailgate.ingest.accept import Envelope, accept
from mailgate.pipeline import batches
from mailgate.replies import outbox
from mailgate.store.models import Article, Blob, InboundMessage
from mailgate.tickets import retention
from tests.conftest import make_runtime, make_settings
from tests.support import FakeClock

ENV = Envelope("jan@customer.example", ("support@helpdesk.example",))


def with_log(subject: str) -> bytes:
    m = EmailMessage()
    m["From"] = "jan@customer.example"
    m["To"] = "support@helpdesk.example"
    m["Subject"] = subject
    m["Message-ID"] = f"<{subject.replace(' ', '-')}@customer.example>"
    m.set_content("log attached")
    m.add_attachment(b"same bytes" * 100, maintype="text", subtype="plain", filename="app.log")
    return m.as_bytes()


def test_purge_and_export(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    rt = make_runtime(make_settings(db_url, tmp_path, retention={"days": 30}), clock)
    try:
        old = accept(rt.sessions, with_log("old one"), ENV, "smtp", clock=clock).inbound_id
        batches.run_pending(rt)
        while outbox.flush(rt):
            pass
        clock.advance(days=20)
        new = accept(rt.sessions, with_log("new one"), ENV, "smtp", clock=clock).inbound_id
        batches.run_pending(rt)
        clock.advance(days=15)  # the first is 35 days old, the second 15
        assert retention.purge(rt) == (1, 0)  # the shared attachment is still in use
        with rt.sessions() as s:
            assert s.get_one(InboundMessage, old).raw == b""
            assert s.get_one(InboundMessage, new).raw != b""
            text = s.scalars(select(Article.text).where(Article.inbound_id == old)).one()
            assert "log attached" in text  # the conversation still reads whole
        out = tmp_path / "t1.mbox"
        # Ticket 1 keeps its acknowledgement as sent; its inbound raw is gone.
        assert retention.export(rt, 1, out) == 1
        box = mailbox.mbox(out)
        [kept] = list(box)
        box.close()
        assert kept["Subject"].startswith("[#1]")
        clock.advance(days=20)
        assert retention.purge(rt) == (1, 1)
        with rt.sessions() as s:
            blob = s.scalars(select(Blob)).one()
            assert blob.data == b"" and blob.purged_at is not None
        assert retention.purge(rt) == (0, 0)
    finally:
        rt.close()


def test_zero_days_keeps_everything(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    rt = make_runtime(make_settings(db_url, tmp_path, retention={"days": 0}), clock)
    try:
        accept(rt.sessions, with_log("kept"), ENV, "smtp", clock=clock)
        batches.run_pending(rt)
        clock.advance(days=3650)
        assert retention.purge(rt) == (0, 0)
    finally:
        rt.close()


def test_sqlite_overwrites_the_bytes_a_rewrite_frees(tmp_path: Path) -> None:
    """A raw copy rewritten without its password leaves no trace in the database file
    (``secure_delete``): the old page is zeroed, not merely put on the free list."""
    from mailgate.config import DatabaseSettings
    from mailgate.store.db import make_engine

    path = tmp_path / "secure.db"
    engine = make_engine(DatabaseSettings(url=f"sqlite:///{path}"))
    try:
        secret = b"Zaq1@wsx-" * 2000  # spans pages, so overflow pages are freed
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, raw BLOB)")
            conn.exec_driver_sql("INSERT INTO t (raw) VALUES (?)", (secret,))
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE t SET raw = ? WHERE id = 1", (b"redacted",))
    finally:
        engine.dispose()
    # What SQLite's automatic checkpoint does: copy the log into the file, empty it.
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("secure.db*"))
    assert b"Zaq1@wsx" not in on_disk
