"""Telling management about abusive mail: one notice per ticket, never the text.

Providers' rules say insults towards support staff may end support "with notification
of the company's management".  mailgate only flags such mail (the rule hit
``abusive``, see ``pipeline.abusive``); when ``[helpdesk] management`` names an
address, ``tell`` mails it the ticket's number and subject — never what the customer
wrote — once per ticket, however many abusive mails the ticket gets.  Replies to the
notice come back as internal notes (an operator-note address that management does not
own as an operator).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.replies import notify
from mailgate.replies.render import Quoted
from mailgate.store.models import OutboxMessage, Ticket
from mailgate.tickets.context import TicketContext

KIND = "management_notice"


def tell(session: Session, rt: TicketContext, ticket: Ticket, inbound_id: int) -> tuple[str, ...]:
    """Notify management about an abusive ticket unless it was told already."""
    address = rt.settings.helpdesk.management
    if not address:
        return ()
    told = session.scalar(
        select(OutboxMessage.id)
        .where(OutboxMessage.ticket_id == ticket.id, OutboxMessage.kind == KIND)
        .limit(1)
    )
    if told is not None:
        return ("management:already-told",)
    notify.send(
        session,
        rt,
        ticket,
        kind=KIND,
        to=address,
        language=rt.settings.helpdesk.default_language,
        role="n",
        internal=True,
        automatic=False,
        auto_submitted="auto-generated",
        quoted=Quoted(subject=ticket.subject),
        record=f"Management ({address}) told that request {ticket.number} was flagged as abusive.",
        context={"queue": ticket.queue},
        inbound_id=inbound_id,
    )
    return ("management:told",)
