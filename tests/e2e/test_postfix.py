"""The Postfix recipe of docs/postfix.md, proven with real servers: a customer's mail
goes swaks → Postfix → mailgate LMTP → ticket → acknowledgement → Postfix → Dovecot, and
the customer reads the acknowledgement back over IMAP."""

from __future__ import annotations

import re

from sqlalchemy import Engine

from tests.e2e.customer import (
    inbound,
    kept_inside,
    new_id,
    send,
    send_raw,
    smuggling,
    ticket_of,
)
from tests.e2e.infra import HELPDESK_DOMAIN, Dovecot, Mailgate, Postfix, wait_for

ALICE, BOB, CAROL = "alice@customer.example", "bob@customer.example", "carol@customer.example"
SUPPORT = f"support@{HELPDESK_DOMAIN}"


def test_customer_mail_becomes_a_ticket_and_the_ack_reaches_their_inbox(
    postfix: Postfix, dovecot: Dovecot, running: Mailgate, db: Engine
) -> None:
    msgid = new_id()
    send(postfix, ALICE, SUPPORT, msgid, "VPS 192.0.2.10 is down", "Since 7:00 no ping.")
    ack = dovecot.find(ALICE, "In-Reply-To", msgid)
    ticket = ticket_of(db, msgid)
    assert ticket.requester == ALICE and ticket.queue == "support"
    assert ticket.subject == "VPS 192.0.2.10 is down"
    assert f"Subject: [#{ticket.number}]".encode() in ack
    assert b"Auto-Submitted: auto-replied" in ack
    assert b"Return-Path: <>" in ack  # null envelope sender: a bounce cannot loop
    # Postfix handed it over LMTP to mailgate, which answered only after storing it.
    [row] = inbound(db, msgid)
    assert row.source == "lmtp"
    delivered = postfix.log_lines(f"relay=127.0.0.1[127.0.0.1]:{running.lmtp_port}")
    assert any(f"status=sent (250 2.0.0 OK queued as {row.id})" in line for line in delivered)


def test_mail_sent_while_mailgate_is_down_waits_in_postfix_and_arrives(
    postfix: Postfix, dovecot: Dovecot, running: Mailgate, db: Engine
) -> None:
    assert running.stop() == 0
    ids = [new_id() for _ in range(3)]
    for n, msgid in enumerate(ids):
        send(postfix, BOB, SUPPORT, msgid, f"Invoice question {n}", "Why two charges?")

    def deferred() -> bool:
        queue = postfix.queue()
        return queue.count("Connection refused") >= len(ids)

    wait_for(deferred, what="Postfix to defer the mail while mailgate is down")
    assert all(not inbound(db, msgid) for msgid in ids)
    running.start()
    postfix.flush()  # rather than waiting out Postfix's retry timer
    for msgid in ids:
        dovecot.find(BOB, "In-Reply-To", msgid)
        assert len(inbound(db, msgid)) == 1  # each stored exactly once
    wait_for(lambda: "Connection refused" not in postfix.queue(), what="an empty queue")


def test_several_recipients_in_one_lmtp_delivery_get_one_reply_each(
    postfix: Postfix, dovecot: Dovecot, running: Mailgate, db: Engine
) -> None:
    msgid = new_id()
    helpdesk = [f"{box}@{HELPDESK_DOMAIN}" for box in ("support", "billing", "abuse")]
    unknown = f"nobody@{HELPDESK_DOMAIN}"
    send(postfix, CAROL, ",".join([*helpdesk, unknown]), msgid, "Spam from 192.0.2.7", "Logs.")
    dovecot.find(CAROL, "In-Reply-To", msgid)
    [row] = inbound(db, msgid)
    assert sorted(row.rcpt_to) == sorted(helpdesk)
    # Postfix read three replies after DATA, one per accepted recipient (RFC 2033),
    # all naming the one stored copy; the unknown address was refused at RCPT.
    handed_over = postfix.log_lines(f"status=sent (250 2.0.0 OK queued as {row.id})")
    recipients = sorted(m.group(1) for x in handed_over if (m := re.search(r"to=<([^>]+)>", x)))
    assert recipients == sorted(helpdesk)
    [bounced] = [x for x in postfix.log_lines(f"to=<{unknown}>") if "status=bounced" in x]
    assert "550 5.1.1" in bounced
    dsn = dovecot.find(CAROL, "Subject", "Undelivered Mail Returned to Sender")
    assert unknown.encode() in dsn


def test_smtp_smuggling_through_postfix_stays_inside_one_message(
    postfix: Postfix, dovecot: Dovecot, running: Mailgate, db: Engine
) -> None:
    """``smtpd_forbid_bare_newline = normalize`` from the recipe: a bare-LF "end of
    data" followed by a second transaction is kept as text of the first message."""
    msgid = new_id()
    smuggled = new_id()
    payload = smuggling(ALICE, SUPPORT, msgid, smuggled, "\n.\r\n")  # <LF>.<CR><LF>
    final = send_raw(postfix.smtp_port, ALICE, SUPPORT, payload)
    assert final.startswith("250"), final
    dovecot.find(ALICE, "In-Reply-To", msgid)  # the real message was processed
    kept_inside(db, msgid, smuggled)
