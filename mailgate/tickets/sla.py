"""Timers on tickets, run by the daemon's scheduler: one function per job, each in one
transaction of its own.

``escalate`` finds tickets whose first-response time ran out without an operator's
reply (and whose ``#eta`` promise, if any, has passed too) and mails the queue's
operators and the on-call address once per ticket; the breach is counted in
``mailgate_sla_breaches`` after the commit.  ``close_resolved`` closes tickets that
stayed resolved for ``sla.close_resolved_days``.  Both are idempotent: a job that runs
twice, or on two instances, changes nothing the second time (the rows it handled no
longer match, and PostgreSQL's SKIP LOCKED keeps instances apart).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mailgate.replies import notes
from mailgate.replies.render import Quoted
from mailgate.store.db import translate_db_errors
from mailgate.store.models import Ticket
from mailgate.store.states import TicketStatus
from mailgate.tickets import operators
from mailgate.tickets.context import TicketContext

log = logging.getLogger(__name__)

BATCH = 200
_WHEN = "%Y-%m-%d %H:%M UTC"


def escalate(rt: TicketContext) -> int:
    """Send the escalation mail for every overdue first response; return how many."""
    now = rt.clock()
    with translate_db_errors(), rt.sessions.begin() as session:
        overdue = session.scalars(
            select(Ticket)
            .where(
                Ticket.status.in_((TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING)),
                Ticket.first_response_at.is_(None),
                Ticket.escalated_at.is_(None),
                Ticket.first_response_due <= now,
                or_(Ticket.eta_at.is_(None), Ticket.eta_at <= now),
            )
            .order_by(Ticket.first_response_due)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        ).all()
        for ticket in overdue:
            ticket.escalated_at = now
            addresses = [o.address for o in operators.of_queue(session, ticket.queue)]
            if ticket.assignee and ticket.assignee not in addresses:
                addresses.append(ticket.assignee)
            if rt.settings.sla.on_call:
                addresses.append(rt.settings.sla.on_call.lower())
            for address in dict.fromkeys(addresses):
                _escalation_mail(session, rt, ticket, address)
            notes.event(
                session,
                now,
                "sla-breach",
                "first-response",
                ticket_id=ticket.id,
                detail=f"first response due {ticket.first_response_due:{_WHEN}}; "
                f"escalated to {', '.join(addresses) or 'nobody (no operators)'}",
            )
        count = len(overdue)
    for _ in range(count):  # counted once committed
        rt.metrics.sla_breaches.inc()
    if count:
        log.warning("sla: %s ticket(s) escalated", count)
    return count


def _escalation_mail(session: Session, rt: TicketContext, ticket: Ticket, address: str) -> None:
    assert ticket.first_response_due is not None
    operators.mail_operator(
        session,
        rt,
        ticket,
        "escalation",
        address,
        quoted=Quoted(subject=ticket.subject),
        context={
            "requester": ticket.requester,
            "queue": ticket.queue,
            "priority": ticket.priority,
            "due": f"{ticket.first_response_due:{_WHEN}}",
            "eta": f"{ticket.eta_at:{_WHEN}}" if ticket.eta_at else "",
        },
    )


def close_resolved(rt: TicketContext) -> int:
    """Close tickets resolved more than ``sla.close_resolved_days`` ago."""
    now = rt.clock()
    cutoff = now - timedelta(days=rt.settings.sla.close_resolved_days)
    with translate_db_errors(), rt.sessions.begin() as session:
        due = session.scalars(
            select(Ticket)
            .where(Ticket.status == TicketStatus.RESOLVED, Ticket.resolved_at <= cutoff)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        ).all()
        for ticket in due:
            operators.set_status(ticket, TicketStatus.CLOSED, now)
            ticket.updated_at = now
        return len(due)
