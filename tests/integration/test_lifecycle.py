"""A real ``mailgate serve`` process under the signals a service manager sends:
SIGTERM drains (421 for newcomers, open transactions finish, exit 0), SIGHUP re-reads
the configuration and templates.  And its start: it greets before the store, the
pipeline and HTTP are up (``daemon.boot``); mail taken in that window is stored, then
processed once the rest is up, and ``/readyz`` says 200 only then."""

from __future__ import annotations

import json
import shutil
import signal
import smtplib
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from mailgate.config import DatabaseSettings
from mailgate.store.db import make_engine
from mailgate.store.models import InboundMessage
from tests.process import HELPDESK_DOMAIN, Mailgate
from tests.support import make_mail, wait_until

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
SUPPORT = f"support@{HELPDESK_DOMAIN}"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Mailgate]:
    process = Mailgate(tmp_path / "mailgate")
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait(10)


def stored(process: Mailgate) -> list[bytes]:
    engine = make_engine(DatabaseSettings(url=process.db_url))
    try:
        with engine.connect() as conn:
            return list(conn.scalars(select(InboundMessage.raw)))
    finally:
        engine.dispose()


def test_sigterm_refuses_newcomers_lets_open_transactions_finish_and_exits_0(
    daemon: Mailgate,
) -> None:
    daemon.write_config("[daemon]\nshutdown_seconds = 20\n")
    daemon.start()
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=10) as open_session:
        open_session.ehlo("mta.example")
        open_session.mail("jan@customer.example")
        assert open_session.rcpt(SUPPORT)[0] == 250
        daemon.signal(signal.SIGTERM)
        wait_until(lambda: daemon.http("/readyz")[0] == 503, what="readyz to report the drain")
        # A newcomer is told to come back later, with the socket still listening.
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=10)
        assert refused.value.smtp_code == 421
        assert refused.value.smtp_error.startswith(b"4.3.2")
        assert daemon.proc is not None and daemon.proc.poll() is None  # still draining
        # ... while the transaction that was open finishes and is stored.
        code, reply = open_session.data(make_mail(subject="sent during the drain"))
        assert code == 250, reply
        # A second transaction on the same connection is not started.
        code, reply = open_session.mail("jan@customer.example")
        assert code == 421
    assert daemon.proc.wait(20) == 0
    [raw] = stored(daemon)
    assert b"sent during the drain" in raw
    log = daemon.log.read_text()
    assert '"msg": "stopped"' in log


def test_sigterm_with_nothing_open_exits_promptly(daemon: Mailgate) -> None:
    daemon.write_config("[daemon]\nshutdown_seconds = 30\n")
    daemon.start()
    started = time.monotonic()
    assert daemon.stop(timeout=30) == 0
    # Nothing to wait for: the drain must not sit out its whole allowance.
    assert time.monotonic() - started < 15


def test_sighup_reloads_addresses_and_templates_and_survives_a_broken_file(
    daemon: Mailgate, tmp_path: Path
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    extra = f'[templates]\ndirectory = "{templates}"\n'
    daemon.write_config(extra, queues=("support",))
    daemon.start()
    sales = f"sales@{HELPDESK_DOMAIN}"
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=10) as c:
        c.ehlo("mta.example")
        c.mail("jan@customer.example")
        assert c.rcpt(sales)[0] == 550
    daemon.write_config(extra, queues=("support", "sales"))
    for subject in templates.glob("ack/*/subject.txt.j2"):
        subject.write_text("{{ tag }} reloaded subject\n")
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: "re-read" in daemon.log.read_text(), what="the reload to be logged")
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=10) as c:
        c.sendmail("jan@customer.example", [sales], make_mail(to=sales, subject="Hello"))
    sent = daemon.root / "sent" / "new"
    wait_until(lambda: sent.exists() and any(sent.iterdir()), what="the acknowledgement")
    [ack] = [p.read_bytes() for p in sent.iterdir()]
    assert b"reloaded subject" in ack
    # A broken file on SIGHUP is refused; the daemon keeps running on what it had.
    daemon.config.write_text("[smtp\n")
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: "reload refused" in daemon.log.read_text(), what="the refusal")
    assert daemon.http("/readyz")[0] == 200
    entries = [json.loads(line) for line in daemon.log.read_text().splitlines()]
    assert any(e["level"] == "error" and "not valid TOML" in e["msg"] for e in entries)
    assert daemon.stop() == 0


class Readiness(threading.Thread):
    """Polls /readyz until it answers 200, keeping every answer (None: no answer)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/readyz"
        self.answers: list[tuple[int | None, str]] = []

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url, timeout=2) as reply:
                    self.answers.append((reply.status, reply.read().decode()))
                    return
            except urllib.error.HTTPError as exc:
                self.answers.append((exc.code, exc.read().decode()))
            except OSError:
                self.answers.append((None, ""))
            time.sleep(0.01)


def count(process: Mailgate, sql: str) -> int:
    with sqlite3.connect(process.store / "mailgate.db", timeout=10) as conn:
        return int(conn.execute(sql).fetchone()[0])


def test_mail_sent_at_the_first_greeting_is_stored_and_becomes_a_ticket(
    daemon: Mailgate,
) -> None:
    daemon.write_config()
    assert daemon.cli("db", "upgrade").returncode == 0
    daemon.serve()
    daemon.wait_greeting()
    readiness = Readiness(daemon.http_port)
    readiness.start()
    mail = make_mail(message_id="<first-greeting@customer.example>")
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=60) as client:
        refused = client.sendmail("jan@customer.example", [f"support@{HELPDESK_DOMAIN}"], mail)
    assert refused == {}
    # 250 came after the commit: the row is there whatever the pipeline is doing.
    assert count(daemon, "SELECT count(*) FROM inbound_message") == 1
    readiness.join(60)
    statuses = [status for status, _ in readiness.answers]
    # Not ready when it first greeted (no HTTP yet, or 503 "starting"), ready later.
    assert statuses[0] != 200 and statuses[-1] == 200, readiness.answers
    assert all("starting" in body for status, body in readiness.answers if status == 503), (
        readiness.answers
    )
    wait_until(
        lambda: count(daemon, "SELECT count(*) FROM ticket") == 1, timeout=30, what="the ticket"
    )
    assert count(daemon, "SELECT count(*) FROM inbound_message WHERE status = 'done'") == 1
    assert daemon.stop() == 0
