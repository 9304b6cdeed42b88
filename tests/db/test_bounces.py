"""Bounces and automatic replies to our mail: threaded to the mail that caused them,
recorded on the outbox row and the ticket, permanent failures suppress the address and
tell the admin mailbox once, delays are only recorded, forged bounces change nothing.
Real database, real pipeline, DSNs in the formats of five MTAs (tests/data/bounces)."""

from __future__ import annotations

import json
import smtplib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from mailgate import cli
from mailgate.daemon.runtime import Runtime
from mailgate.ingest.accept import Envelope
from mailgate.replies import outbox
from mailgate.store.models import Article, Event, OutboxMessage, Suppression, Ticket
from tests.conftest import make_runtime, make_settings
from tests.db.test_pipeline import deliver, inbound, sent_messages
from tests.support import DaemonThread, FakeClock, make_mail

BOUNCES = Path(__file__).resolve().parent.parent / "data" / "bounces"
VERP_ENV = {"MG_VERP_KEY": "test-only-verp-key-0123456789"}
POSTMASTER = "noc@hosting.example"
JAN = "jan@customer.example"


@pytest.fixture
def vrt(db_url: str, tmp_path: Path, clock: FakeClock) -> Iterator[Runtime]:
    """A runtime with VERP return paths and a postmaster to tell about dead addresses."""
    settings = make_settings(
        db_url,
        tmp_path,
        environ=VERP_ENV,
        outbound={"verp_secret_env": "MG_VERP_KEY"},
        helpdesk={"postmaster": POSTMASTER},
    )
    runtime = make_runtime(settings, clock, environ=VERP_ENV)
    yield runtime
    runtime.close()


def dsn(name: str, row: OutboxMessage) -> bytes:
    text = (BOUNCES / f"{name}.eml").read_text()
    for placeholder, value in (
        ("{{MID}}", row.message_id),
        ("{{RCPT}}", row.recipient),
        ("{{RETURN_PATH}}", row.mail_from or "support@helpdesk.example"),
    ):
        text = text.replace(placeholder, value)
    return text.encode()


def rows(rt: Runtime) -> list[OutboxMessage]:
    with rt.sessions() as s:
        return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def events(rt: Runtime, ticket_id: int | None = None) -> list[Event]:
    with rt.sessions() as s:
        query = select(Event).order_by(Event.id)
        if ticket_id is not None:
            query = query.where(Event.ticket_id == ticket_id)
        return list(s.scalars(query))


def ticket(rt: Runtime, number: int) -> Ticket:
    with rt.sessions() as s:
        t = s.scalar(select(Ticket).where(Ticket.number == number))
        assert t is not None
        return t


def articles(rt: Runtime, ticket_id: int) -> list[Article]:
    with rt.sessions() as s:
        return list(s.scalars(select(Article).where(Article.ticket_id == ticket_id)))


def open_ticket_and_send_ack(rt: Runtime, sender: str = JAN) -> OutboxMessage:
    deliver(rt, make_mail(sender=sender), Envelope(sender, ("support@helpdesk.example",)))
    assert outbox.flush(rt) == 1
    [row] = [r for r in rows(rt) if r.recipient == sender and r.kind == "ack"]
    assert row.status == "sent"
    return row


def test_acknowledgements_carry_a_verp_return_path(vrt: Runtime) -> None:
    row = open_ticket_and_send_ack(vrt)
    assert row.mail_from.startswith(f"bounces+{row.id}.")
    assert row.mail_from.endswith("@helpdesk.example")
    [maildir_copy] = sent_messages(vrt)
    assert maildir_copy["Return-Path"] == f"<{row.mail_from}>"


@pytest.mark.parametrize("fmt", ["postfix", "exim", "office365", "gmail", "qmail"])
@pytest.mark.parametrize("path", ["verp", "message-id"])
def test_permanent_bounce_is_threaded_recorded_and_suppresses(
    vrt: Runtime, clock: FakeClock, fmt: str, path: str
) -> None:
    ack = open_ticket_and_send_ack(vrt)
    before = ticket(vrt, 1)
    clock.advance(minutes=5)
    # VERP: the remote MTA bounced to our envelope sender.  "message-id": a server
    # that answers the From address instead; only our Message-ID ties it to the ack.
    rcpt = ack.mail_from if path == "verp" else "support@helpdesk.example"
    row_id = deliver(vrt, dsn(fmt, ack), Envelope("", (rcpt,)))

    row = inbound(vrt, row_id)
    assert row.verdict == "AppendToTicket", row.rule_hits
    assert any(h.startswith("thread:") and h.endswith(":1") for h in row.rule_hits)
    assert {"kind:bounce", "bounce:permanent", "address-suppressed"} <= set(row.rule_hits)
    assert "admin-notice:sent" in row.rule_hits
    note = [a for a in articles(vrt, before.id) if a.inbound_id == row_id]
    assert len(note) == 1 and note[0].internal  # a quiet note, never shown to the customer

    [ack_now, notice] = rows(vrt)
    assert ack_now.id == ack.id and ack_now.status == "bounced"
    assert ack_now.delivery_action == "failed"
    assert ack_now.delivery_status == ("5.1.10" if fmt == "office365" else "5.1.1")
    assert ack_now.delivery_detail
    assert ack_now.reason == f"dsn:{ack_now.delivery_status}"

    with vrt.sessions() as s:
        suppression = s.scalars(select(Suppression)).one()
    assert suppression.address == JAN
    assert suppression.until == clock() + timedelta(days=30)
    assert suppression.notified_at == clock()

    kinds = [(e.kind, e.reason) for e in events(vrt, before.id)]
    assert ("bounce", f"dsn:{ack_now.delivery_status}") in kinds
    assert ("admin-notice", "address-suppressed") in kinds

    # The admin mailbox hears about it, in mail that is itself automatic.
    assert notice.kind == "bounce-notice" and notice.recipient == POSTMASTER
    sent = [m for m in sent_messages(vrt) if m["To"] == POSTMASTER]
    assert len(sent) == 1
    assert sent[0]["Auto-Submitted"] == "auto-generated"
    assert JAN in sent[0].get_content()

    # The bounce reopened nothing, answered nothing, touched no timer.
    after = ticket(vrt, 1)
    assert (after.status, after.updated_at) == (before.status, before.updated_at)
    assert {r.kind for r in rows(vrt)} == {"ack", "bounce-notice"}


def test_suppressed_address_gets_no_acknowledgement_until_the_period_ends(
    vrt: Runtime, clock: FakeClock
) -> None:
    ack = open_ticket_and_send_ack(vrt)
    deliver(vrt, dsn("postfix", ack), Envelope("", (ack.mail_from,)))
    clock.advance(days=1)
    deliver(vrt, make_mail(subject="another problem", message_id="<q2@customer.example>"))
    held = rows(vrt)[-1]
    assert (held.kind, held.status, held.reason) == ("ack", "suppressed", "address-suppressed")
    t2 = ticket(vrt, 2)
    [ev] = events(vrt, t2.id)
    assert (ev.kind, ev.reason, ev.address) == ("suppressed", "address-suppressed", JAN)
    out = [a for a in articles(vrt, t2.id) if a.direction == "out"]
    assert out[0].internal and "not sent: address-suppressed" in out[0].text
    # A second bounce for the same address extends the period; the admin is told once.
    deliver(vrt, dsn("exim", ack), Envelope("", (ack.mail_from,)))
    assert [r.kind for r in rows(vrt)].count("bounce-notice") == 1
    clock.advance(days=30)
    deliver(vrt, make_mail(subject="third", message_id="<q3@customer.example>"))
    assert rows(vrt)[-1].status == "pending"  # the period is over: acknowledged again


def test_delay_notice_is_recorded_and_nothing_else(vrt: Runtime) -> None:
    ack = open_ticket_and_send_ack(vrt)
    row_id = deliver(vrt, dsn("postfix_delayed", ack), Envelope("", (ack.mail_from,)))
    assert "bounce:delayed" in inbound(vrt, row_id).rule_hits
    assert "kind:report" in inbound(vrt, row_id).rule_hits  # a delay is not a bounce
    [ack_now] = rows(vrt)
    assert (ack_now.status, ack_now.delivery_status, ack_now.delivery_action) == (
        "sent",
        "4.4.1",
        "delayed",
    )
    assert [(e.kind, e.reason) for e in events(vrt)] == [("delay", "dsn:4.4.1")]
    with vrt.sessions() as s:
        assert s.scalars(select(Suppression)).all() == []


def test_forged_bounce_cannot_silence_an_address(vrt: Runtime) -> None:
    ack = open_ticket_and_send_ack(vrt)
    forged = dsn("postfix", ack).replace(ack.message_id.encode(), b"ack.guess@helpdesk.example")
    row_id = deliver(vrt, forged, Envelope("", ("support@helpdesk.example",)))
    row = inbound(vrt, row_id)
    assert row.verdict == "Discard"
    assert "bounce:untraced" in row.rule_hits
    with vrt.sessions() as s:
        assert s.scalars(select(Suppression)).all() == []
        assert s.get_one(OutboxMessage, ack.id).status == "sent"


def test_listener_accepts_only_verp_addresses_with_a_valid_tag(vrt: Runtime) -> None:
    ack = open_ticket_and_send_ack(vrt)
    forged = ack.mail_from.replace(f"+{ack.id}.", f"+{ack.id + 1}.")
    with (
        DaemonThread(vrt) as daemon,
        smtplib.SMTP("127.0.0.1", daemon.port("smtp"), timeout=10) as c,
    ):
        c.ehlo()
        c.mail("<>")
        assert c.rcpt(ack.mail_from)[0] == 250
        assert c.rcpt(forged)[0] == 550
        assert c.rcpt("bounces@helpdesk.example")[0] == 550


def test_out_of_office_reply_is_a_quiet_note_on_a_closed_ticket(
    vrt: Runtime, clock: FakeClock
) -> None:
    ack = open_ticket_and_send_ack(vrt)
    with vrt.sessions.begin() as s:
        t = s.scalars(select(Ticket)).one()
        t.status = "resolved"
    before = ticket(vrt, 1)
    clock.advance(hours=2)
    replies = [
        # Exchange style, to the From address, quoting our Message-ID.
        (
            make_mail(
                subject="Automatic reply: [#1] Your request has been registered",
                message_id="<oof1@customer.example>",
                body="I am out of the office until Monday.",
                headers={
                    "Auto-Submitted": "auto-replied",
                    "In-Reply-To": f"<{ack.message_id}>",
                    "X-MS-Exchange-Inbox-Rules-Loop": JAN,
                },
            ),
            Envelope("", ("support@helpdesk.example",)),
        ),
        # Sieve vacation style, to the envelope sender (our VERP address), no threading.
        (
            make_mail(
                subject="Nieobecność: urlop",
                message_id="<oof2@customer.example>",
                body="Jestem na urlopie do poniedziałku.",
                headers={"Auto-Submitted": "auto-replied (vacation)"},
            ),
            Envelope("", (ack.mail_from,)),
        ),
    ]
    for raw, env in replies:
        row = inbound(vrt, deliver(vrt, raw, env))
        assert row.verdict == "AppendToTicket", row.rule_hits
        assert "auto-note" in row.rule_hits
    notes = [a for a in articles(vrt, before.id) if a.inbound_id is not None][1:]
    assert len(notes) == 2 and all(a.internal for a in notes)
    after = ticket(vrt, 1)
    assert (after.status, after.updated_at) == ("resolved", before.updated_at)
    assert [r.kind for r in rows(vrt)] == ["ack"]  # nothing answered them
    assert events(vrt) == []  # an auto-reply is not a delivery failure


def test_ticket_show_json_lists_bounces_and_suppressed_mail(
    vrt: Runtime, db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    ack = open_ticket_and_send_ack(vrt)
    deliver(vrt, dsn("gmail", ack), Envelope("", (ack.mail_from,)))
    deliver(vrt, make_mail(subject="again", message_id="<q9@customer.example>"))
    config_file = tmp_path / "cli.toml"
    config_file.write_text(
        f'[database]\nurl = "{db_url}"\n[outbound]\nverp_secret_env = "MG_VERP_KEY"\n'
    )
    runner = CliRunner(env=VERP_ENV)
    shown = []
    for number in (1, 2):
        result = runner.invoke(
            cli.main, ["--config", str(config_file), "ticket", "show", str(number), "--json"]
        )
        assert result.exit_code == 0, result.output
        shown.append(json.loads(result.output))
    first, second = shown
    bounce = next(e for e in first["events"] if e["kind"] == "bounce")
    assert bounce["reason"] == "dsn:5.1.1" and bounce["address"] == JAN
    assert "does not exist" in bounce["detail"]
    assert any(a["internal"] and "Delivery Status" in a["subject"] for a in first["articles"])
    [held] = second["events"]
    assert (held["kind"], held["reason"]) == ("suppressed", "address-suppressed")
    listed = runner.invoke(cli.main, ["--config", str(config_file), "outbox", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    statuses = {(d["kind"], d["status"], d["reason"]) for d in json.loads(listed.output)}
    assert ("ack", "bounced", "dsn:5.1.1") in statuses
    assert ("ack", "suppressed", "address-suppressed") in statuses


def test_notice_without_a_postmaster_is_recorded_on_the_ticket(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(
        db_url, tmp_path, environ=VERP_ENV, outbound={"verp_secret_env": "MG_VERP_KEY"}
    )
    rt = make_runtime(settings, clock, environ=VERP_ENV)
    try:
        ack = open_ticket_and_send_ack(rt)
        row_id = deliver(rt, dsn("qmail", ack), Envelope("", (ack.mail_from,)))
        assert "admin-notice:nobody" in inbound(rt, row_id).rule_hits
        assert ("admin-notice", "no-admin-address") in [(e.kind, e.reason) for e in events(rt)]
        assert [r.kind for r in rows(rt)] == ["ack"]
    finally:
        rt.close()


def test_notice_renders_in_the_default_language(vrt: Runtime) -> None:
    ack = open_ticket_and_send_ack(vrt)
    deliver(vrt, dsn("postfix", ack), Envelope("", (ack.mail_from,)))
    [notice] = [m for m in sent_messages(vrt) if m["To"] == POSTMASTER]
    assert notice["Content-Language"] == "en"
    assert notice["Subject"] == f"Mail to {JAN} bounces; automatic mail to it is paused"
    assert "[#1]" in notice.get_content()
