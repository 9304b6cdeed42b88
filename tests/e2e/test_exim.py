"""The Exim recipe of docs/exim.md, proven with a real Exim: a customer's mail goes
swaks → Exim → mailgate LMTP → ticket → acknowledgement → Exim → Dovecot, and the
customer reads the acknowledgement back over IMAP.

This module has a mailgate of its own, relaying through Exim (the session's mailgate
relays through Postfix); Dovecot, the customers' mail provider, is the session's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
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
from tests.e2e.exim import CUSTOMER_HOST, Exim, exim_binary
from tests.e2e.infra import HELPDESK_DOMAIN, Dovecot, Mailgate, wait_for

ALICE, BOB, CAROL = "alice@customer.example", "bob@customer.example", "carol@customer.example"
SUPPORT = f"support@{HELPDESK_DOMAIN}"


@pytest.fixture(scope="module")
def binary() -> Path:
    found = exim_binary()
    if found is None:
        problem = "Exim not unpacked (run .ci/install-mail-servers.sh)"
        if os.environ.get("CI"):
            pytest.fail(f"the Exim recipe cannot be proven in CI: {problem}", pytrace=False)
        pytest.skip(problem)
    return found


@pytest.fixture(scope="module")
def behind_exim(e2e_root: Path) -> Mailgate:
    """Created before Exim (its transport names mailgate's LMTP port), started after
    it (mailgate relays its acknowledgements through Exim)."""
    return Mailgate(e2e_root / "mailgate-exim", relay_port=0)


@pytest.fixture(scope="module")
def exim(e2e_root: Path, binary: Path, dovecot: Dovecot, behind_exim: Mailgate) -> Iterator[Exim]:
    server = Exim(e2e_root / "exim", binary, dovecot.lmtp_port, behind_exim.lmtp_port)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mailgate_exim(exim: Exim, behind_exim: Mailgate) -> Iterator[Mailgate]:
    behind_exim.relay_port = exim.smtp_port
    behind_exim.start()
    yield behind_exim
    behind_exim.stop()


@pytest.fixture
def running(mailgate_exim: Mailgate) -> Mailgate:
    """This module's mailgate, restarted first if an earlier test left it stopped."""
    if mailgate_exim.proc is None or mailgate_exim.proc.poll() is not None:
        mailgate_exim.start()
    return mailgate_exim


def exim_id(received: bytes) -> str:
    """The Exim message id in the topmost Received header that Exim wrote."""
    found = re.search(rb"by exim\.e2e\.test with \w+ \(Exim [\d.]+\)\s+id ([\w-]+)", received)
    assert found, received[:1500]
    return found.group(1).decode()


def test_customer_mail_through_exim_becomes_a_ticket_and_the_ack_leaves_through_exim(
    exim: Exim, dovecot: Dovecot, running: Mailgate, db: Engine
) -> None:
    msgid = new_id()
    send(exim, ALICE, SUPPORT, msgid, "Mailbox full on mx2", "Quota warnings since Monday.")
    ack = dovecot.find(ALICE, "In-Reply-To", msgid)
    ticket = ticket_of(db, msgid)
    assert ticket.requester == ALICE and ticket.queue == "support"
    assert ticket.subject == "Mailbox full on mx2"
    assert f"Subject: [#{ticket.number}]".encode() in ack
    assert b"Auto-Submitted: auto-replied" in ack
    assert b"Return-Path: <>" in ack  # Exim kept the null envelope sender
    # The recipe's router and transport handed it to mailgate over LMTP ...
    [row] = inbound(db, msgid)
    assert row.source == "lmtp"
    [handed] = exim.log_lines(f"=> {SUPPORT} R=mailgate T=mailgate_lmtp")
    assert f"H=127.0.0.1 [127.0.0.1]:{running.lmtp_port}" in handed
    assert f'C="250 2.0.0 OK queued as {row.id}"' in handed
    # ... and the acknowledgement came back from mailgate's host into Exim, which
    # delivered it to the customer's provider.
    ack_id = exim_id(ack)
    [received] = exim.log_lines(f"{ack_id} <= <>")
    assert "[127.0.0.1]" in received
    assert exim.log_lines(f"{ack_id} => {ALICE} R=customers T=customers_lmtp")
    assert exim.panics() == []


def test_mail_sent_while_mailgate_is_down_waits_in_exim_until_a_queue_run(
    exim: Exim, dovecot: Dovecot, running: Mailgate, db: Engine
) -> None:
    assert running.stop() == 0
    ids = [new_id() for _ in range(3)]
    for n, msgid in enumerate(ids):
        send(exim, BOB, SUPPORT, msgid, f"Renewal question {n}", "Does it renew itself?")

    # The first is refused; Exim then remembers the host is down and defers the others
    # without trying ("retry time not reached") until the queue run.
    def deferred() -> bool:
        return len(exim.log_lines(f"== {SUPPORT} R=mailgate T=mailgate_lmtp defer (")) >= 3

    wait_for(deferred, what="Exim to defer the mail while mailgate is down")
    assert exim.log_lines("T=mailgate_lmtp defer (111): Connection refused")
    assert all(not inbound(db, msgid) for msgid in ids)
    running.start()
    exim.flush()  # `exim -qff`, as docs/exim.md says
    for msgid in ids:
        dovecot.find(BOB, "In-Reply-To", msgid)
        assert len(inbound(db, msgid)) == 1  # each stored exactly once
    wait_for(lambda: exim.queue().strip() == "", what="an empty Exim queue")
    assert exim.panics() == []


def test_several_recipients_in_one_lmtp_delivery_and_exim_bounces_only_the_unknown(
    exim: Exim, dovecot: Dovecot, running: Mailgate, db: Engine
) -> None:
    msgid = new_id()
    helpdesk = [f"{box}@{HELPDESK_DOMAIN}" for box in ("support", "billing", "abuse")]
    unknown = f"nobody@{HELPDESK_DOMAIN}"
    send(exim, CAROL, ",".join([*helpdesk, unknown]), msgid, "Spam from 192.0.2.7", "Logs.")
    dovecot.find(CAROL, "In-Reply-To", msgid)
    [row] = inbound(db, msgid)
    assert sorted(row.rcpt_to) == sorted(helpdesk)
    # One transaction (Exim logs the first address with "=>", the others of the same
    # delivery with "->"), one reply per recipient after DATA, all naming one stored copy.
    confirmed = exim.log_lines(f'C="250 2.0.0 OK queued as {row.id}"')
    delivered = sorted(m.group(2) for x in confirmed if (m := re.search(r"(=>|->) (\S+)", x)))
    assert delivered == sorted(helpdesk)
    assert sum(" => " in x for x in confirmed) == 1
    # mailgate refused the unknown address at RCPT; Exim bounced that one alone.
    [bounced] = exim.log_lines(f"** {unknown} R=mailgate T=mailgate_lmtp")
    assert "550 5.1.1" in bounced
    dsn = dovecot.find(CAROL, "Subject", "Mail delivery failed")
    assert re.findall(rb"^Final-Recipient: rfc822;(\S+)", dsn, re.M) == [unknown.encode()]
    assert exim.panics() == []


@pytest.mark.parametrize(
    "end_of_data",
    ["\n.\r\n", "\r\n.\n", "\n.\n"],
    ids=["LF.CRLF", "CRLF.LF (CVE-2023-51766)", "LF.LF"],
)
def test_smtp_smuggling_through_exim_stays_inside_one_message(
    exim: Exim, dovecot: Dovecot, running: Mailgate, db: Engine, end_of_data: str
) -> None:
    """Exim (Debian's 4.96 since deb12u4, upstream 4.97.1) takes a bare-LF "end of data"
    followed by a second transaction as text of the first message: one mail to mailgate,
    no forged second one."""
    msgid = new_id()
    smuggled = new_id()
    payload = smuggling(ALICE, SUPPORT, msgid, smuggled, end_of_data)
    final = send_raw(exim.smtp_port, ALICE, SUPPORT, payload, source=CUSTOMER_HOST)
    assert final.startswith("250"), final
    dovecot.find(ALICE, "In-Reply-To", msgid)  # the real message was processed
    kept_inside(db, msgid, smuggled)
    assert exim.log_lines(f"<= ceo@{HELPDESK_DOMAIN}") == []
