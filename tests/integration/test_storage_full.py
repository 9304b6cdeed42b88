"""A database that cannot grow: 452 4.3.1 at DATA over SMTP and LMTP, no quarantine in
the worker, and everything goes on once it can grow again — without a restart.

SQLite's ``max_page_count`` caps the file at its current size, so any write that needs
a new page fails with the same SQLITE_FULL a full disk gives (the real full disk, a
tmpfs, is tests/faults/test_disk_full.py).  Outbox bookkeeping that fails after a
send (here: the database locked by another connection) is recorded on the next pass,
not after the send lease.
"""

from __future__ import annotations

import smtplib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from mailgate.daemon.runtime import Runtime
from mailgate.errors import StorageFull, TemporaryError
from mailgate.ingest.accept import Envelope, accept
from mailgate.pipeline import batches
from mailgate.replies import outbox
from mailgate.replies.sender import Connection, MaildirTransport
from mailgate.store.models import Article, InboundMessage, OutboxMessage
from tests.conftest import make_runtime, make_settings
from tests.support import DaemonThread, FakeClock, make_mail

ENV = Envelope("jan@customer.example", ("support@helpdesk.example",))
# Big enough to need pages the capped file does not have (raw bytes, article text).
BODY = "Serwer nie odpowiada od rana.\n" * 1500


class PageCap:
    """Caps the SQLite file at its size when ``close`` is called, until ``open``."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.limit: int | None = None
        self.default: int | None = None
        event.listen(rt.engine, "checkout", self._apply)

    def _apply(self, dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if self.default is None:
            self.default = dbapi_conn.execute("PRAGMA max_page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count={self.limit or self.default}")

    def close(self) -> None:
        with self.rt.engine.connect() as conn:
            self.limit = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())

    def open(self) -> None:
        self.limit = None


@pytest.fixture
def capped(db_url: str, tmp_path: Path, clock: FakeClock) -> Iterator[tuple[Runtime, PageCap]]:
    settings = make_settings(db_url, tmp_path, processing={"retry_base_seconds": 1})
    rt = make_runtime(settings, clock)
    yield rt, PageCap(rt)
    rt.close()


def statuses(rt: Runtime) -> dict[str, int]:
    with rt.sessions() as s:
        rows = s.execute(select(InboundMessage.status, InboundMessage.attempts)).all()
    return {status: attempts for status, attempts in rows}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_accept_raises_storage_full_and_stores_nothing(capped: tuple[Runtime, PageCap]) -> None:
    rt, cap = capped
    cap.close()
    raw = make_mail(subject="full", body=BODY)
    with pytest.raises(StorageFull):
        accept(rt.sessions, raw, ENV, "pipe", clock=rt.clock)
    assert statuses(rt) == {}
    cap.open()
    accept(rt.sessions, raw, ENV, "pipe", clock=rt.clock)
    assert statuses(rt) == {"received": 0}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_listeners_answer_452_at_data_then_accept_the_retry(
    capped: tuple[Runtime, PageCap],
) -> None:
    rt, cap = capped
    raw = make_mail(subject="full", body=BODY, message_id="<full@customer.example>")
    with DaemonThread(rt) as d:
        cap.close()
        for client, port in ((smtplib.SMTP, d.port("smtp")), (smtplib.LMTP, d.port("lmtp"))):
            with (
                client("127.0.0.1", port, timeout=30) as c,
                pytest.raises(smtplib.SMTPDataError) as refused,
            ):
                c.sendmail(ENV.mail_from or "", list(ENV.rcpt_to), raw)
            assert refused.value.smtp_code == 452
            assert refused.value.smtp_error.startswith(b"4.3.1 ")
        assert statuses(rt) == {}
        cap.open()
        # The sending MTA's retry, on the same daemon.
        with smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=30) as c:
            c.sendmail(ENV.mail_from or "", list(ENV.rcpt_to), raw)
    assert list(statuses(rt)) in (["received"], ["done"])


class FullAfterFacts:
    """The facts stage, after which the cap closes: the claim has been written, the
    ticket cannot be."""

    def __init__(self, inner: Any, cap: PageCap) -> None:
        self.inner = inner
        self.cap = cap

    def run(self, *args: Any) -> Any:
        self.cap.close()
        return self.inner.run(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_worker_never_quarantines_for_storage_full_and_resumes(
    capped: tuple[Runtime, PageCap],
) -> None:
    rt, cap = capped
    accept(rt.sessions, make_mail(subject="to process", body=BODY), ENV, "pipe", clock=rt.clock)
    rt.analyzer = FullAfterFacts(rt.analyzer, cap)
    worker = batches.Worker(rt)
    for _ in range(rt.settings.processing.max_attempts + 1):
        with pytest.raises(StorageFull):
            worker.run_pending()
    # Still held by the worker (its release needs space too), the one attempt only.
    assert statuses(rt) == {"processing": 1}
    cap.open()
    rt.analyzer = rt.analyzer.inner
    assert worker.run_pending() == 1
    assert statuses(rt) == {"done": 1}
    with rt.sessions() as s:
        assert s.scalar(select(Article.id)) is not None


class LockAfterSend:
    """The Maildir transport; once a mail is written, another connection locks the
    database, so the bookkeeping after the send fails."""

    def __init__(self, maildir: Path, db_path: str) -> None:
        self.maildir = MaildirTransport(maildir)
        self.db_path = db_path
        self.blocker: sqlite3.Connection | None = None

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.maildir.connect() as conn:
            yield self._locking(conn)

    def _locking(self, conn: Connection) -> Connection:
        outer = self

        class Locking:
            def send(self, mail_from: str, rcpt_to: list[str], raw: bytes, key: str) -> None:
                conn.send(mail_from, rcpt_to, raw, key)
                outer.blocker = sqlite3.connect(outer.db_path, isolation_level=None)
                outer.blocker.execute("BEGIN EXCLUSIVE")

        return Locking()

    def unlock(self) -> None:
        assert self.blocker is not None
        self.blocker.execute("ROLLBACK")
        self.blocker.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_outbox_records_a_send_whose_bookkeeping_failed_on_the_next_pass(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(db_url, tmp_path, database={"busy_timeout_ms": 300})
    rt = make_runtime(settings, clock)
    transport = LockAfterSend(tmp_path / "sent", db_url.split(":///", 1)[1])
    rt.transport = transport
    try:
        accept(rt.sessions, make_mail(subject="ack me"), ENV, "pipe", clock=rt.clock)
        assert batches.run_pending(rt) == 1
        dispatcher = outbox.Dispatcher(rt)
        with pytest.raises(TemporaryError):
            dispatcher.flush()
        transport.unlock()
        with rt.sessions() as s:
            held = s.scalars(select(OutboxMessage)).one()
        # Without the remembered outcome the row would wait out the send lease.
        assert held.status == "pending"
        assert held.next_attempt_at > clock() + timedelta(minutes=4)
        assert dispatcher.flush() == 0
        with rt.sessions() as s:
            sent = s.scalars(select(OutboxMessage)).one()
        assert (sent.status, sent.attempts) == ("sent", 1)
        clock.advance(hours=1)
        assert outbox.flush(rt) == 0
        assert len(list((tmp_path / "sent" / "new").iterdir())) == 1
    finally:
        rt.close()
