"""Processing stored mail into tickets: open, acknowledge, thread, deduplicate, retry,
quarantine.  Real database (SQLite and PostgreSQL), real templates, Maildir outbox."""

from __future__ import annotations

import email
import mailbox
from email import policy
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from mailgate.daemon.runtime import Runtime
from mailgate.ingest.accept import Envelope, accept
from mailgate.pipeline import batches, claims
from mailgate.replies import outbox
from mailgate.store.models import Article, Attachment, Blob, InboundMessage, OutboxMessage, Ticket
from tests.conftest import make_runtime, make_settings
from tests.support import FakeClock, make_mail

# What our own MTA writes for a sender whose domain's DMARC check passed.
PASSED = "mx.helpdesk.example; dmarc=pass header.from=%s"
ENV = Envelope("jan@customer.example", ("support@helpdesk.example",))


def deliver(rt: Runtime, raw: bytes, env: Envelope = ENV, **kw: Any) -> int:
    result = accept(rt.sessions, raw, env, "smtp", clock=rt.clock, **kw)
    while batches.run_pending(rt):
        pass
    return result.inbound_id


def sent_messages(rt: Runtime) -> list[email.message.EmailMessage]:
    while outbox.flush(rt):
        pass
    box = mailbox.Maildir(rt.settings.outbound.maildir, factory=None, create=True)
    msgs = [
        email.message_from_bytes(box.get_bytes(k), policy=policy.default)
        for k in sorted(box.keys())
    ]
    return msgs  # type: ignore[return-value]


def inbound(rt: Runtime, inbound_id: int) -> InboundMessage:
    with rt.sessions() as s:
        return s.get_one(InboundMessage, inbound_id)


def tickets(rt: Runtime) -> list[Ticket]:
    with rt.sessions() as s:
        return list(s.scalars(select(Ticket).order_by(Ticket.number)))


def articles(rt: Runtime, number: int) -> list[Article]:
    with rt.sessions() as s:
        t = s.scalar(select(Ticket).where(Ticket.number == number))
        assert t is not None
        return list(t.articles)


def test_new_mail_opens_a_ticket_and_acknowledges_it(rt: Runtime) -> None:
    raw = make_mail(message_id="<q1@customer.example>")
    row_id = deliver(rt, raw)
    [ticket] = tickets(rt)
    assert ticket.number == 1
    assert ticket.queue == "technical"
    assert ticket.requester == "jan@customer.example"
    assert ticket.requester_name == "Jan Kowalski"
    assert ticket.subject == "Serwer nie odpowiada"
    assert ticket.language == "pl"
    row = inbound(rt, row_id)
    assert row.status == "done" and row.verdict == "OpenTicket" and row.ticket_id == ticket.id
    assert "open" in row.rule_hits
    [ack] = sent_messages(rt)
    assert ack["To"] == "jan@customer.example"
    assert ack["Subject"].startswith("[#1] ")
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["X-Auto-Response-Suppress"] == "All"
    assert ack["In-Reply-To"] == "<q1@customer.example>"
    assert "<q1@customer.example>" in ack["References"]
    body = ack.get_content()
    assert "1" in body and "[#1]" in body
    # Never echo the inbound text (RFC 3834 reflector risk): not the subject, not the body.
    assert "Serwer nie odpowiada" not in body + ack["Subject"]
    assert "192.0.2.10" not in body
    assert "zgłoszenie" in body  # answered in the customer's language
    with rt.sessions() as s:
        box = s.scalars(select(OutboxMessage)).one()
        assert box.status == "sent" and box.mail_from == "" and box.rcpt_to == [ticket.requester]


def test_queue_follows_the_recipient_address(rt: Runtime) -> None:
    deliver(
        rt,
        make_mail(to="billing@helpdesk.example"),
        Envelope("jan@customer.example", ("Billing+x@helpdesk.example",)),
    )
    [ticket] = tickets(rt)
    assert ticket.queue == "billing"
    assert ticket.helpdesk_address == "billing@helpdesk.example"
    [ack] = sent_messages(rt)
    assert "billing@helpdesk.example" in ack["From"]


def test_ticket_numbers_are_sequential(rt: Runtime) -> None:
    for i in range(3):
        deliver(rt, make_mail(subject=f"problem {i}", sender=f"c{i}@customer.example"))
    assert [t.number for t in tickets(rt)] == [1, 2, 3]


def test_reply_to_our_acknowledgement_appends_to_the_ticket(rt: Runtime) -> None:
    deliver(rt, make_mail(message_id="<q1@customer.example>"))
    [ack] = sent_messages(rt)
    reply = make_mail(
        subject="Re: something else entirely",
        body="Still down.\n\nOn Mon, 23 Nov 2026 Helpdesk wrote:\n> we have received\n",
        headers={"In-Reply-To": ack["Message-ID"], "References": ack["Message-ID"]},
    )
    row_id = deliver(rt, reply)
    assert len(tickets(rt)) == 1
    row = inbound(rt, row_id)
    assert row.verdict == "AppendToTicket"
    assert "thread:our-message-id:1" in row.rule_hits
    arts = articles(rt, 1)
    assert [(a.direction, a.internal) for a in arts] == [
        ("in", False),
        ("out", False),
        ("in", False),
    ]
    assert len(sent_messages(rt)) == 1  # no second acknowledgement for a follow-up


def test_our_message_id_from_someone_else_is_kept_for_operators_only(rt: Runtime) -> None:
    """The signed Message-ID is bound to the address we sent it to: in anyone else's
    hands (a forward, a leaked thread) it files the mail with the ticket, internally."""
    deliver(rt, make_mail(message_id="<q1@customer.example>"))
    [ack] = sent_messages(rt)
    row_id = deliver(
        rt,
        make_mail(
            sender="someone.else@elsewhere.example",
            subject="Re: something",
            body="Please also delete everything.",
            headers={"In-Reply-To": ack["Message-ID"]},
        ),
    )
    assert len(tickets(rt)) == 1
    row = inbound(rt, row_id)
    assert "thread:unverified-reference:1" in row.rule_hits
    assert "held-for-operators" in row.rule_hits
    assert articles(rt, 1)[-1].internal is True
    assert len(sent_messages(rt)) == 1


def test_subject_tag_threads_only_for_authenticated_participants(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(
        db_url, tmp_path, verify={"trusted_authserv_ids": ["mx.helpdesk.example"]}
    )
    rt = make_runtime(settings, clock)
    passed = {
        "Authentication-Results": "mx.helpdesk.example; dmarc=pass header.from=customer.example"
    }
    try:
        deliver(rt, make_mail(subject="VPS down"))
        deliver(rt, make_mail(subject="Re: [#1] VPS down", body="more details", headers=passed))
        assert len(tickets(rt)) == 1
        assert len(articles(rt, 1)) == 3
        # The same participant without authentication: anyone can write that From.
        row_id = deliver(rt, make_mail(subject="Odp: [#1] VPS down", body="even more"))
        assert [t.number for t in tickets(rt)] == [1, 2]
        assert "mentions:1" in inbound(rt, row_id).rule_hits
        # A stranger who knows the number, even authenticated, opens a ticket of their own.
        row_id = deliver(
            rt,
            make_mail(
                sender="mallory@evil.example",
                subject="Re: [#1] change my password",
                headers={"Authentication-Results": PASSED % "evil.example"},
            ),
        )
        assert [t.number for t in tickets(rt)] == [1, 2, 3]
        assert "mentions:1" in inbound(rt, row_id).rule_hits
        assert len(articles(rt, 1)) == 3
    finally:
        rt.close()


def test_same_message_delivered_twice_makes_one_article(rt: Runtime) -> None:
    raw = make_mail(message_id="<twice@customer.example>")
    first = deliver(rt, raw)
    # The second copy came over another path: different trace headers, same mail.
    second = deliver(rt, b"Received: from mx2.helpdesk.example\r\n" + raw)
    assert len(tickets(rt)) == 1
    assert len([a for a in articles(rt, 1) if a.direction == "in"]) == 1
    assert inbound(rt, second).verdict == "Duplicate"
    assert inbound(rt, second).ticket_id == inbound(rt, first).ticket_id
    assert len(sent_messages(rt)) == 1


def test_same_message_id_with_other_content_is_not_a_duplicate(rt: Runtime) -> None:
    deliver(rt, make_mail(message_id="<same@customer.example>", body="one"))
    deliver(rt, make_mail(message_id="<same@customer.example>", body="two"))
    # Same requester, no thread evidence beyond the shared id → second article or ticket,
    # never silently dropped.
    with rt.sessions() as s:
        assert (
            s.scalar(select(func.count()).select_from(Article).where(Article.direction == "in"))
            == 2
        )


def test_one_message_to_two_helpdesk_addresses_is_one_ticket(rt: Runtime) -> None:
    env = Envelope("jan@customer.example", ("support@helpdesk.example", "billing@helpdesk.example"))
    deliver(rt, make_mail(to="support@helpdesk.example, billing@helpdesk.example"), env)
    assert len(tickets(rt)) == 1
    assert len(sent_messages(rt)) == 1


def test_autoreplies_and_lists_get_no_acknowledgement(rt: Runtime) -> None:
    deliver(rt, make_mail(subject="Out of office", headers={"Auto-Submitted": "auto-replied"}))
    deliver(
        rt,
        make_mail(
            subject="Newsletter",
            sender="news@list.example",
            headers={"List-Id": "<news.list.example>"},
        ),
    )
    assert sent_messages(rt) == []
    [ticket] = tickets(rt)  # the list mail is kept as a ticket, just never answered
    assert ticket.requester == "news@list.example"


def test_attachments_are_stored_once_by_content_hash(rt: Runtime) -> None:
    from email.message import EmailMessage

    def with_attachment(subject: str) -> bytes:
        m = EmailMessage()
        m["From"] = "jan@customer.example"
        m["To"] = "support@helpdesk.example"
        m["Subject"] = subject
        m.set_content("log attached")
        m.add_attachment(
            b"\x00log-bytes\x01" * 100,
            maintype="application",
            subtype="octet-stream",
            filename="../../etc/server.log",
        )
        return m.as_bytes()

    deliver(rt, with_attachment("first"))
    deliver(rt, with_attachment("second"))
    with rt.sessions() as s:
        atts = list(s.scalars(select(Attachment)))
        assert len(atts) == 2
        assert {a.filename for a in atts} == {"server.log"}
        assert s.scalar(select(func.count()).select_from(Blob)) == 1


def test_hostile_message_is_quarantined_with_a_reason_and_kept(rt: Runtime) -> None:
    to = ", ".join(f"user{i}@example.com" for i in range(10_000))
    raw = make_mail(to="support@helpdesk.example").replace(
        b"To: support@helpdesk.example", f"To: {to}".encode()
    )
    row_id = deliver(rt, raw)
    row = inbound(rt, row_id)
    assert row.status == "quarantined"
    assert row.reason == "header-too-large"
    assert row.raw == raw
    # The queue is not blocked: the next message goes through.
    deliver(rt, make_mail())
    assert len(tickets(rt)) == 1


def test_ambiguous_from_is_quarantined(rt: Runtime) -> None:
    raw = make_mail(sender="victim@customer.example").replace(
        b"From: victim@customer.example",
        b"From: victim@customer.example\r\nFrom: attacker@evil.example",
    )
    row = inbound(rt, deliver(rt, raw))
    assert row.status == "quarantined"
    assert row.reason == "no-sender-identity"
    assert tickets(rt) == []


def test_failures_retry_with_backoff_then_quarantine_then_replay(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    broken = tmp_path / "no-templates"
    broken.mkdir()
    settings = make_settings(
        db_url,
        tmp_path,
        templates={"directory": str(broken)},
        processing={"max_attempts": 3, "retry_base_seconds": 10},
    )
    rt = make_runtime(settings, clock)
    try:
        row_id = accept(rt.sessions, make_mail(), ENV, "smtp", clock=clock).inbound_id
        assert batches.run_pending(rt) == 1
        row = inbound(rt, row_id)
        assert (row.status, row.attempts) == ("retry", 1)
        assert "TemplateNotFound" in (row.last_error or "")
        assert batches.run_pending(rt) == 0  # not due yet
        clock.advance(seconds=10)
        assert batches.run_pending(rt) == 1
        assert inbound(rt, row_id).status == "retry"
        clock.advance(seconds=19)
        assert batches.run_pending(rt) == 0  # second delay is 20 s
        clock.advance(seconds=1)
        assert batches.run_pending(rt) == 1
        row = inbound(rt, row_id)
        assert (row.status, row.reason, row.attempts) == ("quarantined", "attempts-exhausted", 3)
        assert tickets(rt) == []  # every failed attempt rolled back completely
    finally:
        rt.close()
    # The operator fixes the templates and replays: the message is processed once.
    fixed = make_runtime(make_settings(db_url, tmp_path), clock)
    try:
        from click.testing import CliRunner

        from mailgate import cli

        config_file = tmp_path / "replay.toml"
        config_file.write_text(f'[database]\nurl = "{db_url}"\n')
        result = CliRunner().invoke(
            cli.main, ["--config", str(config_file), "quarantine", "replay", str(row_id)]
        )
        assert result.exit_code == 0, result.output
        assert "1 message(s)" in result.output
        # replay stamps the real time; move the fake clock past it
        clock.advance(days=3650)
        assert batches.run_pending(fixed) == 1
        assert inbound(fixed, row_id).status == "done"
        assert len(tickets(fixed)) == 1
    finally:
        fixed.close()


def test_dead_worker_lease_is_reclaimed(rt: Runtime, clock: FakeClock) -> None:
    row_id = accept(rt.sessions, make_mail(), ENV, "smtp", clock=clock).inbound_id
    assert [c.id for c in claims.claim(rt, 10)] == [row_id]  # and then the worker "dies"
    assert claims.claim(rt, 10) == []
    clock.advance(seconds=rt.settings.processing.lease_seconds + 1)
    [again] = claims.claim(rt, 10)
    batches.process(rt, again)
    assert inbound(rt, row_id).status == "done"
    assert len(tickets(rt)) == 1


def test_a_worker_ahead_processes_a_backlog_once_and_gives_back_what_it_holds(
    rt: Runtime,
) -> None:
    ids = [
        accept(
            rt.sessions,
            make_mail(
                sender=f"Client {i} <client{i}@customer.example>",
                subject=f"Backlog {i}",
                message_id=f"<backlog{i}@customer.example>",
            ),
            ENV,
            "smtp",
            clock=rt.clock,
        ).inbound_id
        for i in range(5)
    ]

    def rows() -> list[tuple[str, int]]:
        with rt.sessions() as s:
            found = {r.id: (r.status, r.attempts) for r in s.scalars(select(InboundMessage))}
        return [found[i] for i in ids]

    worker = batches.Worker(rt, ahead=True)
    # A full batch: written, while the next one is claimed and its facts worked out.
    assert worker.run_pending(2) == 2
    assert [status for status, _ in rows()] == [
        "done",
        "done",
        "processing",
        "processing",
        "received",
    ]
    # The daemon stops: the batch claimed ahead goes back at once, its attempt with it.
    worker.close()
    assert rows()[2:4] == [("retry", 0), ("retry", 0)]
    worker = batches.Worker(rt, ahead=True)
    while worker.run_pending(2):
        pass
    assert [status for status, _ in rows()] == ["done"] * 5
    # Every message exactly once: one ticket and one article each, numbered 1 to 5.
    assert [t.number for t in tickets(rt)] == [1, 2, 3, 4, 5]
    with rt.sessions() as s:
        inbound_articles = select(func.count()).where(Article.direction == "in")
        assert s.scalar(inbound_articles) == 5
