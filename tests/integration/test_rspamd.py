"""mailgate asking a real rspamd: during the SMTP/LMTP session (reject refused with
550 5.7.1 and nothing stored; add header / rewrite subject stored and held as spam;
honest mail as today), after storing for pipe mail, and failing open when rspamd is
away.  rspamd's GTUBE patterns give the fixed verdicts.

A missing rspamd fails these tests under CI (``.ci/install-mail-servers.sh`` installs
it); a developer without it may set MAILGATE_TEST_SKIP_RSPAMD=1 to skip them knowingly.
"""

from __future__ import annotations

import os
import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mailgate.daemon.runtime import Runtime
from mailgate.ingest.accept import Envelope, accept
from mailgate.pipeline import batches
from mailgate.store.models import InboundMessage, OutboxMessage, Ticket
from tests.conftest import make_runtime, make_settings
from tests.rspamd import GTUBE_ADD_HEADER, GTUBE_REJECT, GTUBE_REWRITE_SUBJECT, Rspamd, binary
from tests.support import DaemonThread, RelaySink, free_port, make_mail, wait_until


@pytest.fixture(scope="session")
def rspamd() -> Iterator[Rspamd]:
    executable = binary()
    if executable is None or os.geteuid() != 0:
        if os.environ.get("MAILGATE_TEST_SKIP_RSPAMD") and not os.environ.get("CI"):
            pytest.skip("rspamd tests skipped on request (MAILGATE_TEST_SKIP_RSPAMD)")
        pytest.fail("the rspamd tests need Debian's rspamd (.ci/install-mail-servers.sh) and root")
    server = Rspamd(executable)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def spam_rt(db_url: str, tmp_path: Path, sink: RelaySink, rspamd: Rspamd) -> Iterator[Runtime]:
    rt = make_runtime(
        make_settings(
            db_url,
            tmp_path,
            outbound={"relay": f"127.0.0.1:{sink.port}"},
            spam={"rspamd_url": rspamd.url, "rspamd_timeout_ms": 5000},
        )
    )
    yield rt
    rt.close()


def rows(rt: Runtime) -> list[InboundMessage]:
    with rt.sessions() as s:
        return list(s.scalars(select(InboundMessage).order_by(InboundMessage.id)))


def count(rt: Runtime, model: Any) -> int:
    with rt.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def metric(rt: Runtime, name: str, **labels: str) -> float:
    return rt.metrics.registry.get_sample_value(name, labels) or 0.0


def gtube_mail(pattern: str, subject: str = "Cheap offer") -> bytes:
    return make_mail(subject=subject, body=f"Buy now!\n{pattern}\n", sender="spam@spam.example")


CUSTOMER = "jan@customer.example"
HELPDESK = "support@helpdesk.example"


def test_smtp_reject_is_refused_in_the_session_and_nothing_is_stored(spam_rt: Runtime) -> None:
    with DaemonThread(spam_rt) as d, smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=30) as c:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            c.sendmail("spam@spam.example", [HELPDESK], gtube_mail(GTUBE_REJECT))
        assert refused.value.smtp_code == 550
        assert refused.value.smtp_error.startswith(b"5.7.1")
        # The session goes on: the next, honest message is taken.
        assert c.sendmail(CUSTOMER, [HELPDESK], make_mail(subject="DNS")) == {}
        wait_until(lambda: count(spam_rt, Ticket) == 1, 30, "the honest ticket")
    [stored] = rows(spam_rt)
    assert stored.scan is not None and stored.scan["action"] == "no action"
    assert metric(spam_rt, "mailgate_spam_refused_messages_total", listener="smtp") == 1


def test_lmtp_reject_answers_each_recipient(spam_rt: Runtime) -> None:
    with DaemonThread(spam_rt) as d, smtplib.LMTP("127.0.0.1", d.port("lmtp"), timeout=30) as c:
        c.ehlo_or_helo_if_needed()
        c.mail("spam@spam.example")
        c.rcpt(HELPDESK)
        c.rcpt("billing@helpdesk.example")
        code, _ = c.docmd("DATA")
        assert code == 354
        c.send(gtube_mail(GTUBE_REJECT) + b".\r\n")  # CRLF already, no line starts with "."
        first = c.getreply()
        second = c.getreply()
    assert first[0] == 550 and second[0] == 550
    assert first[1].startswith(b"5.7.1") and second[1].startswith(b"5.7.1")
    assert rows(spam_rt) == []


@pytest.mark.parametrize(
    ("pattern", "action"),
    [(GTUBE_ADD_HEADER, "add header"), (GTUBE_REWRITE_SUBJECT, "rewrite subject")],
)
def test_smtp_add_header_is_stored_and_held_as_spam(
    spam_rt: Runtime, sink: RelaySink, pattern: str, action: str
) -> None:
    with DaemonThread(spam_rt) as d, smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=30) as c:
        assert c.sendmail("spam@spam.example", [HELPDESK], gtube_mail(pattern)) == {}
        held = wait_until(
            lambda: [r for r in rows(spam_rt) if r.status == "quarantined"], 30, "held spam"
        )
    [row] = held
    assert row.reason is not None and row.reason.startswith(f"spam: {action} score=")
    assert row.scan is not None and row.scan["action"] == action
    assert "spam:rspamd:" + action.replace(" ", "-") in row.rule_hits
    assert count(spam_rt, Ticket) == 0
    assert count(spam_rt, OutboxMessage) == 0
    assert sink.messages == []
    assert metric(spam_rt, "mailgate_spam_held_messages_total", source="rspamd") == 1


def test_pipe_mail_is_asked_after_storing(spam_rt: Runtime) -> None:
    env = Envelope("spam@spam.example", (HELPDESK,))
    held = accept(spam_rt.sessions, gtube_mail(GTUBE_REJECT), env, "pipe", clock=spam_rt.clock)
    honest = accept(spam_rt.sessions, make_mail(), Envelope(CUSTOMER, (HELPDESK,)), "pipe")
    while batches.run_pending(spam_rt):
        pass
    by_id = {r.id: r for r in rows(spam_rt)}
    spam_row, ham_row = by_id[held.inbound_id], by_id[honest.inbound_id]
    # Too late to refuse: a reject is held like any other spam verdict.
    assert spam_row.status == "quarantined" and spam_row.reason is not None
    assert spam_row.reason.startswith("spam: reject")
    assert ham_row.verdict == "OpenTicket"
    assert ham_row.scan is not None and ham_row.scan["action"] == "no action"


def test_rspamd_away_fails_open(db_url: str, tmp_path: Path, caplog: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    rt = make_runtime(make_settings(db_url, tmp_path, spam={"rspamd_url": dead}))
    try:
        with DaemonThread(rt) as d, smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=30) as c:
            assert c.sendmail(CUSTOMER, [HELPDESK], gtube_mail(GTUBE_REJECT, "Help")) == {}
            wait_until(lambda: count(rt, Ticket) == 1, 30, "the ticket")
        [row] = rows(rt)
        assert row.scan is not None and "unscanned" in row.scan
        assert row.verdict == "OpenTicket"
        assert metric(rt, "mailgate_spam_unscanned_messages_total", source="smtp") == 1
        assert any(
            r.levelname == "WARNING" and "unscanned" in r.getMessage() for r in caplog.records
        )
    finally:
        rt.close()
