"""What the end-to-end tests do as a customer, and what they read back from mailgate's
database: a fresh Message-ID, a mail submitted with swaks to whichever MTA is in front
(Postfix or Exim), an SMTP smuggling attempt over a bare socket, and the stored message
or ticket it became."""

from __future__ import annotations

import re
import socket
import uuid
from typing import Protocol

from sqlalchemy import Engine, select

from mailgate.store.models import InboundMessage, Ticket


class Submission(Protocol):
    """An MTA the test submits to (``Postfix.swaks``, ``Exim.swaks``)."""

    def swaks(self, *args: str) -> str: ...


def new_id() -> str:
    return f"{uuid.uuid4().hex}@customer.example"


def send(mta: Submission, sender: str, to: str, msgid: str, subject: str, body: str) -> None:
    mta.swaks(
        "--from", sender, "--to", to,
        "--header", f"Message-Id: <{msgid}>", "--header", f"Subject: {subject}",
        "--header", f"From: {sender}", "--body", body,
    )  # fmt: skip


def smuggling(sender: str, rcpt: str, msgid: str, smuggled: str, end_of_data: str) -> str:
    """DATA of one harmless message from ``sender`` that carries, after a non-standard
    ``end_of_data``, a second transaction forging mail from the helpdesk's own domain."""
    forged = f"ceo@{rcpt.partition('@')[2]}"
    return (
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: harmless\r\nMessage-Id: <{msgid}>\r\n\r\n"
        "hello\r\n"
        f"{end_of_data}"
        f"MAIL FROM:<{forged}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n"
        f"From: {forged}\r\nMessage-Id: <{smuggled}>\r\nSubject: smuggled\r\n\r\n"
        "pay now\r\n"
        ".\r\n"
    )


def send_raw(port: int, sender: str, rcpt: str, data: str, source: str = "127.0.0.1") -> str:
    """One SMTP transaction whose DATA goes out byte for byte (swaks would mend the line
    endings); returns the server's reply to the end of data."""
    with socket.create_connection(("127.0.0.1", port), 20, (source, 0)) as sock:
        f = sock.makefile("rwb")

        def say(line: str) -> str:
            if line:
                f.write(line.encode() + b"\r\n")
                f.flush()
            reply = f.readline().decode()
            while reply[3:4] == "-":
                reply = f.readline().decode()
            return reply

        assert say("").startswith("220")
        assert say("EHLO smuggler.customer.example").startswith("250")
        assert say(f"MAIL FROM:<{sender}>").startswith("250")
        assert say(f"RCPT TO:<{rcpt}>").startswith("250")
        assert say("DATA").startswith("354")
        f.write(data.encode())
        f.flush()
        final = f.readline().decode()
        say("QUIT")
    return final


def inbound(db: Engine, msgid: str) -> list[InboundMessage]:
    with db.connect() as conn:
        rows = conn.execute(select(InboundMessage).where(InboundMessage.message_id == msgid))
        return list(rows)  # type: ignore[arg-type]


def ticket_of(db: Engine, msgid: str) -> Ticket:
    with db.connect() as conn:
        row = conn.execute(
            select(Ticket)
            .join(InboundMessage, InboundMessage.ticket_id == Ticket.id)
            .where(InboundMessage.message_id == msgid)
        ).one()
    return row  # type: ignore[return-value]


def kept_inside(db: Engine, msgid: str, smuggled: str) -> None:
    """The smuggling attempt of ``smuggling()`` was stored as one message."""
    [row] = inbound(db, msgid)
    assert b"pay now" in row.raw  # the real message carries the smuggled text as its body
    assert inbound(db, smuggled) == []  # which never became a message of its own
    assert not re.search(rb"^Message-Id: <" + smuggled.encode(), row.raw[:200], re.M)
