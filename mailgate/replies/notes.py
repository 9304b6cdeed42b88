"""How outgoing mail reports to operators: events, and internal notes on the ticket.

Every mail that was not delivered — suppressed by a limit, refused by the relay,
given up after its lifetime, bounced — leaves an ``Event`` with a reason code, tied
to its ticket when it has one, so ``mailgate ticket show`` explains what happened and
nothing disappears silently.  Failures an operator must act on also get an internal
article, which is what a helpdesk agent actually reads.  Functions take the caller's
session and never commit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from mailgate.store.models import Article, Event

AUTHOR = "mailgate"


def event(
    session: Session,
    now: datetime,
    kind: str,
    reason: str,
    *,
    ticket_id: int | None = None,
    outbox_id: int | None = None,
    inbound_id: int | None = None,
    address: str | None = None,
    detail: str = "",
) -> Event:
    row = Event(
        created_at=now,
        kind=kind,
        reason=reason[:64],
        ticket_id=ticket_id,
        outbox_id=outbox_id,
        inbound_id=inbound_id,
        address=address,
        detail=detail[:4000],
    )
    session.add(row)
    return row


def internal_note(session: Session, ticket_id: int, now: datetime, subject: str, text: str) -> None:
    """An article only operators see; it never reaches the customer."""
    session.add(
        Article(
            ticket_id=ticket_id,
            direction="out",
            author=AUTHOR,
            subject=subject,
            text=text,
            body_text=text,
            internal=True,
            created_at=now,
        )
    )
