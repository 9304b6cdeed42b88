"""Opening a ticket: its number, language and first-response clock, and the
acknowledgement that tells the requester the number.

Two doors open tickets — a mail (``tickets.apply``) and a request from the hosting
panel (``tickets.panel``) — and both come through here, so a ticket is numbered,
timed and acknowledged the same way whichever door it came in by.  Functions write in
the caller's transaction and never commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from mailgate.parse.language import choose_language
from mailgate.replies import notify
from mailgate.store.models import Counter, Ticket
from mailgate.store.states import TicketStatus
from mailgate.tickets.context import TicketContext


@dataclass(frozen=True, slots=True)
class NewTicket:
    """What a new ticket is made of, whichever door it came in by."""

    subject: str
    queue: str
    priority: str
    authorization: str
    requester: str
    requester_name: str
    helpdesk_address: str
    account_id: int | None
    # Language candidates in order of preference (account, Content-Language, detected);
    # the queue's language and the helpdesk default follow them.
    languages: tuple[str | None, ...]
    priority_reason: str | None = None
    links: int | None = None  # id of a ticket resolved too long ago to reopen


def open_ticket(session: Session, rt: TicketContext, new: NewTicket, now: datetime) -> Ticket:
    """Number and store a new ticket with its first-response clock running."""
    helpdesk = rt.settings.helpdesk
    ticket = Ticket(
        subject=new.subject[:2000] or "(no subject)",
        queue=new.queue,
        priority=new.priority,
        priority_reason=new.priority_reason,
        status=TicketStatus.NEW,
        requester=new.requester.lower(),
        requester_name=new.requester_name,
        language=choose_language(
            *new.languages,
            helpdesk.queue_languages.get(new.queue),
            helpdesk.default_language,
        ),
        helpdesk_address=new.helpdesk_address,
        authorization=new.authorization,
        account_id=new.account_id,
        first_response_due=now + rt.settings.first_response_target(new.queue, new.priority),
        linked_ticket_id=new.links,
        created_at=now,
        updated_at=now,
    )
    _number(session, ticket)
    session.add(ticket)
    session.flush()
    return ticket


def _number(session: Session, ticket: Ticket) -> None:
    """Give a new ticket its number.  On PostgreSQL the column's default does it, from
    a sequence, inside the ticket's own INSERT (alembic 0012: no round trip, no lock
    held to the commit, a gap where a savepoint rolls back); SQLite takes the counter
    row, under its one writer."""
    if session.get_bind().dialect.name != "postgresql":
        ticket.number = allocate_number(session)


def acknowledge(
    session: Session,
    rt: TicketContext,
    ticket: Ticket,
    to: str,
    *,
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
    password_redacted: bool = False,
    password_used: bool = False,
    missing: tuple[str, ...] = (),
    web_missing: tuple[str, ...] = (),
    kb: tuple[Mapping[str, str], ...] = (),
    inbound_id: int | None = None,
    warning: bool = False,
) -> None:
    """Mail the requester the ticket's number, threaded under what they sent."""
    notify.send(
        session,
        rt,
        ticket,
        kind="ack",
        to=to,
        language=ticket.language,
        in_reply_to=in_reply_to,
        references=references,
        context={
            "authorization": ticket.authorization,
            "password_redacted": password_redacted,
            # Authorized by the account's password: used once, not kept (say so).
            "password_used": password_used,
            # A high-priority report is an incident: ask for exactly what it lacks.
            "missing": list(missing) if ticket.priority == "high" else [],
            # A web fault report, at any priority: OS, browser and version, URL, screenshot.
            "web_missing": list(web_missing),
            "kb": list(kb),
        },
        inbound_id=inbound_id,
        # The one automatic mail past the per-recipient limit: a password to change.
        warning=warning,
    )


def allocate_number(session: Session) -> int:
    """The next ticket number, under the counter row's lock (SQLite)."""
    value = session.scalar(
        update(Counter)
        .where(Counter.name == "ticket")
        .values(value=Counter.value + 1)
        .returning(Counter.value)
    )
    if value is None:
        raise RuntimeError("ticket counter row missing: run `mailgate db upgrade`")
    return int(value)
