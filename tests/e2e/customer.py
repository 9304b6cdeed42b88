"""What the end-to-end tests do as a customer, and what they read back from mailgate's
database: a fresh Message-ID, a mail submitted with swaks to whichever MTA is in front
(Postfix or Exim), and the stored message or ticket it became."""

from __future__ import annotations

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
