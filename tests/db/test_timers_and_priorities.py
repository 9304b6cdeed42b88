"""Priorities, incident acknowledgements, reopening, languages and the SLA jobs, on a
real database with the fake clock moving time; outgoing mail lands in the Maildir."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import select

from mailgate.daemon.runtime import Runtime
from mailgate.ingest.accept import Envelope
from mailgate.store.models import Event, OutboxMessage, Ticket
from mailgate.tickets import operators, sla
from tests.conftest import make_runtime, make_settings
from tests.db.test_pipeline import deliver, inbound, sent_messages, tickets
from tests.dkimkeys import Key, make_key, sign
from tests.support import FakeClock, FakeDns, make_mail

ANNA = "anna@staff.example"


def add_operator(rt: Runtime, address: str = ANNA, queue: str = "technical") -> None:
    with rt.sessions.begin() as s:
        operators.add(s, address, "Anna", [queue], rt.clock())


def staffed(
    db_url: str, tmp_path: Path, clock: FakeClock, **sections: dict[str, object]
) -> tuple[Runtime, Key]:
    """A runtime with Anna registered and her domain's DKIM key published."""
    key = make_key()
    settings = make_settings(db_url, tmp_path, **sections)
    rt = make_runtime(settings, clock, dns=FakeDns({"s1._domainkey.staff.example": key.txt}))
    add_operator(rt)
    return rt, key


def outbox(rt: Runtime) -> list[tuple[str, str]]:
    with rt.sessions() as s:
        rows = s.execute(
            select(OutboxMessage.kind, OutboxMessage.recipient).order_by(OutboxMessage.id)
        ).all()
    return [(kind, recipient) for kind, recipient in rows]


def body(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def test_outage_is_high_priority_and_the_ack_asks_for_exactly_what_is_missing(
    rt: Runtime,
) -> None:
    row_id = deliver(
        rt,
        make_mail(subject="Awaria", body="Serwer 192.0.2.10 nie działa, ping: timeout.\n"),
    )
    [ticket] = tickets(rt)
    assert (ticket.priority, ticket.priority_reason) == ("high", "keyword:awaria")
    assert "priority:keyword:awaria" in inbound(rt, row_id).rule_hits
    assert ticket.first_response_due == rt.clock() + rt.settings.first_response_target(
        "technical", "high"
    )
    [ack] = sent_messages(rt)
    text = body(ack)
    assert ack["Content-Language"] == "pl"
    assert "nazwy usługi" in text and "strefą czasową" in text  # service, start time
    assert "adresu IP serwera" not in text and "traceroute" not in text  # both given


def test_x_priority_header_and_normal_tickets_do_not_ask(rt: Runtime) -> None:
    deliver(rt, make_mail(subject="Question", body="How do I add a domain?", headers={
        "X-Priority": "1 (Highest)"}))  # fmt: skip
    deliver(rt, make_mail(subject="Question 2", body="How do I add a mailbox?"))
    first, second = tickets(rt)
    assert (first.priority, first.priority_reason) == ("high", "header:x-priority=1")
    assert (second.priority, second.priority_reason) == ("normal", None)
    acks = sent_messages(rt)
    assert "we need" in body(acks[0]) and "we need" not in body(acks[1])


def test_language_from_content_language_then_text_then_queue_default(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(db_url, tmp_path, helpdesk={"queue_languages": {"billing": "cs"}})
    rt = make_runtime(settings, clock)
    try:
        # make_mail's set_content would drop a Content-Language given before it.
        deliver(rt, b"Content-Language: sk-SK\r\n" + make_mail(subject="x", body="ok"))
        deliver(rt, make_mail(subject="y", body="Здравствуйте, сайт недоступен с утра."))
        to_billing = Envelope("jan@customer.example", ("billing@helpdesk.example",))
        deliver(rt, make_mail(to="billing@helpdesk.example", subject="z", body="ok"), to_billing)
        assert [t.language for t in tickets(rt)] == ["sk", "ru", "cs"]
    finally:
        rt.close()


def test_first_response_escalation_respects_eta_and_counts_breaches(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    rt, key = staffed(db_url, tmp_path, clock, sla={"on_call": "oncall@staff.example"})
    try:
        deliver(rt, make_mail(subject="Server down", body="VPS 192.0.2.10"))
        deliver(rt, make_mail(subject="Invoice", body="A question", sender="b@customer.example"))
        [notice] = [m for m in sent_messages(rt) if m["To"] == ANNA][:1]
        # The operator promises an answer for ticket 1 in 30 minutes.
        eta = make_mail(sender=ANNA, to=notice["Reply-To"], body="#eta 30m waiting for the DC")
        deliver(rt, sign(eta, key, "staff.example"))
        held = [m for m in sent_messages(rt) if m["To"] == "jan@customer.example"][-1]
        assert "waiting for the DC" in body(held) and "09:30 UTC" in body(held)
        clock.advance(minutes=11)  # past the 10-minute high target, before the ETA
        assert sla.escalate(rt) == 0
        clock.advance(minutes=50)  # past the ETA and the 60-minute normal target
        assert sla.escalate(rt) == 2
        assert sla.escalate(rt) == 0  # once per ticket
        escalations = [r for k, r in outbox(rt) if k == "escalation"]
        assert sorted(escalations) == sorted([ANNA, "oncall@staff.example"] * 2)
        assert rt.metrics.sla_breaches._value.get() == 2
        with rt.sessions() as s:
            assert len(s.scalars(select(Event).where(Event.kind == "sla-breach")).all()) == 2
    finally:
        rt.close()


def test_answered_tickets_are_not_escalated_and_resolved_ones_close(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    rt, key = staffed(db_url, tmp_path, clock, sla={"close_resolved_days": 2})
    try:
        deliver(rt, make_mail(subject="Hello", body="A question"))
        [notice] = [m for m in sent_messages(rt) if m["To"] == ANNA]
        answer = make_mail(sender=ANNA, to=notice["Reply-To"], body="#status resolved\nDone.")
        deliver(rt, sign(answer, key, "staff.example"))
        clock.advance(hours=2)
        assert sla.escalate(rt) == 0
        clock.advance(days=1)
        assert sla.close_resolved(rt) == 0
        clock.advance(days=1, minutes=1)
        assert sla.close_resolved(rt) == 1
        [ticket] = tickets(rt)
        assert ticket.status == "closed" and ticket.closed_at == clock()
    finally:
        rt.close()


def test_reply_after_reopen_days_opens_a_linked_ticket(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    rt, key = staffed(db_url, tmp_path, clock, threading={"reopen_days": 10})
    try:
        deliver(rt, make_mail(subject="Hello", body="A question"))
        ack, notice = sorted(sent_messages(rt), key=lambda m: m["To"] != "jan@customer.example")
        resolve = make_mail(sender=ANNA, to=notice["Reply-To"], body="#status resolved")
        deliver(rt, sign(resolve, key, "staff.example"))
        clock.advance(days=11)
        row_id = deliver(rt, make_mail(to=ack["Reply-To"], subject="Re: [#1]", body="Again?"))
        old, new = tickets(rt)
        assert old.status == "resolved"
        assert new.linked_ticket_id == old.id
        assert "reopen-expired:1" in inbound(rt, row_id).rule_hits
        notice2 = email.message_from_bytes(
            next(
                m for m in sent_messages(rt) if "[#2]" in m["Subject"] and m["To"] == ANNA
            ).as_bytes()
        )
        assert "continues request 1" in str(notice2)
    finally:
        rt.close()


def test_a_follow_up_is_acknowledged_in_the_tickets_language(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    rt, _ = staffed(db_url, tmp_path, clock, threading={"reopen_days": 10})
    try:
        deliver(rt, make_mail())  # Polish: the first ticket speaks Polish
        ack = next(m for m in sent_messages(rt) if m["To"] == "jan@customer.example")
        assert tickets(rt)[0].language == "pl"
        with rt.sessions.begin() as s:
            s.scalars(select(Ticket)).one().status = "resolved"
            s.scalars(select(Ticket)).one().resolved_at = clock()
        clock.advance(days=11)
        deliver(rt, make_mail(to=ack["Reply-To"], subject="Re: [#1]", body="Again? Still down."))
        old, new = tickets(rt)
        assert new.linked_ticket_id == old.id
        assert new.language == "pl"
        ack2 = [m for m in sent_messages(rt) if m["To"] == "jan@customer.example"][-1]
        assert ack2["Content-Language"] == "pl"
    finally:
        rt.close()


def test_an_operator_whose_reply_stayed_internal_is_told_so(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    rt, key = staffed(db_url, tmp_path, clock)
    try:
        deliver(rt, make_mail(subject="Hello", body="A question"))
        ack, notice = sorted(sent_messages(rt), key=lambda m: m["To"] != "jan@customer.example")
        # a) Through her reply address, but not authenticated (no DKIM signature).
        unsigned = make_mail(
            sender=ANNA, to=notice["Reply-To"], body="Fixed.", message_id="<a1@staff.example>"
        )
        deliver(rt, unsigned)
        # b) Authenticated, but to the helpdesk address (her client's "reply all").
        wrong = make_mail(
            sender=ANNA,
            subject=f"Re: {notice['Subject']}",
            body="Fixed too.",
            message_id="<a2@staff.example>",
            headers={"In-Reply-To": notice["Message-ID"]},
        )
        deliver(rt, sign(wrong, key, "staff.example"))
        told = [m for m in sent_messages(rt) if "kept internal" in m["Subject"]]
        assert [(m["To"], m["In-Reply-To"]) for m in told] == [
            (ANNA, "<a1@staff.example>"),
            (ANNA, "<a2@staff.example>"),
        ]
        first, second = body(told[0]), body(told[1])
        assert "did not arrive authenticated" in first and "reply address for" not in first
        assert "reply address for" in second and "did not arrive authenticated" not in second
        assert "not sent to the customer" in body(told[0])
        # The customer got the acknowledgement and nothing else.
        assert [m["Subject"] for m in sent_messages(rt) if m["To"] == "jan@customer.example"] == [
            ack["Subject"]
        ]
        assert all(t.status == "new" for t in tickets(rt))
    finally:
        rt.close()


def test_a_note_by_the_note_address_is_not_answered(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    rt, key = staffed(db_url, tmp_path, clock)
    try:
        deliver(rt, make_mail(subject="Hello", body="A question"))
        [notice] = [m for m in sent_messages(rt) if m["To"] == ANNA]
        note_address = next(
            w.rstrip(",") for w in body(notice).split() if ".n." in w and "@helpdesk" in w
        )
        deliver(
            rt, sign(make_mail(sender=ANNA, to=note_address, body="Note."), key, "staff.example")
        )
        deliver(rt, make_mail(sender=ANNA, to=note_address, body="Unsigned note."))
        assert not [m for m in sent_messages(rt) if "kept internal" in m["Subject"]]
    finally:
        rt.close()


def test_operator_notice_carries_the_customers_attachments(rt: Runtime) -> None:
    add_operator(rt)
    msg = email.message_from_bytes(
        make_mail(subject="Logs attached", body="See the log."), policy=policy.default
    )
    assert isinstance(msg, EmailMessage)
    msg.add_attachment(b"error 42\n", maintype="text", subtype="plain", filename="app.log")
    deliver(rt, msg.as_bytes())
    [notice] = [m for m in sent_messages(rt) if m["To"] == ANNA]
    [attachment] = list(notice.iter_attachments())
    assert attachment.get_filename() == "app.log"
    assert attachment.get_content() == "error 42\n"
    assert notice["Reply-To"].startswith("support+1.o.")
    with rt.sessions() as s:
        ticket = s.scalars(select(Ticket)).one()
        assert ticket.status == "new"
