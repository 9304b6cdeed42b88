"""Database unavailable while mail arrives: the sender hears 451 (never 250, never
5xx), and the same message is accepted once the database is back."""

from __future__ import annotations

import smtplib
import sqlite3
import time
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from mailgate.store.models import InboundMessage, Ticket
from tests.conftest import make_runtime, make_settings
from tests.support import DaemonThread, TcpProxy, make_mail, wait_until


def send(port: int, raw: bytes) -> tuple[int, float]:
    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        try:
            c.sendmail("jan@customer.example", ["support@helpdesk.example"], raw)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, time.monotonic() - started
    return 250, time.monotonic() - started


def test_database_down_answers_451_then_accepts(db_url: str, tmp_path: Path) -> None:
    proxy: TcpProxy | None = None
    if db_url.startswith("sqlite"):
        settings = make_settings(db_url, tmp_path, database={"busy_timeout_ms": 300})
    else:
        url = make_url(db_url)
        proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
        proxy.start()
        via_proxy = url.set(host="127.0.0.1", port=proxy.port)
        settings = make_settings(
            db_url,
            tmp_path,
            database={"url": via_proxy.render_as_string(hide_password=False), "connect_timeout": 2},
        )
    rt = make_runtime(settings)
    blocker = None
    try:
        with DaemonThread(rt) as d:
            port = d.port("smtp")
            assert send(port, make_mail(subject="before"))[0] == 250
            # Take the database away.
            if proxy is not None:
                proxy.stop()
            else:
                blocker = sqlite3.connect(db_url.split(":///", 1)[1], isolation_level=None)
                blocker.execute("BEGIN EXCLUSIVE")
            raw = make_mail(subject="during", message_id="<during@customer.example>")
            code, seconds = send(port, raw)
            assert code == 451
            assert seconds < 10
            # The MTA retries later, once the database is back.
            if proxy is not None:
                proxy.start()
            else:
                assert blocker is not None
                blocker.execute("ROLLBACK")
                blocker.close()
                blocker = None
            assert send(port, raw)[0] == 250

            def processed() -> bool:
                with rt.sessions() as s:
                    return (
                        s.scalar(
                            select(func.count())
                            .select_from(InboundMessage)
                            .where(InboundMessage.status == "done")
                        )
                        == 2
                    )

            wait_until(processed, timeout=20, what="both messages processed")
        with rt.sessions() as s:
            subjects = sorted(s.scalars(select(Ticket.subject)))
        assert subjects == ["before", "during"]
    finally:
        if blocker is not None:
            blocker.close()
        rt.close()
        if proxy is not None:
            proxy.stop()
