"""The JSON shape of a ticket, its articles and its events.

One shape for every reader: ``mailgate ticket show --json`` and ``tickets list`` print
it, and the panel API (``mailgate.daemon.api``) builds on it, so a field means the same
wherever it is read.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from mailgate.store.models import Account, Article, Event, Ticket
from mailgate.tickets import correlate


def iso(value: datetime | None) -> str | None:
    """A timestamp as the JSON views print it."""
    return value.isoformat() if value else None


def ticket_json(t: Ticket, account: str | None = None) -> dict[str, Any]:
    return {
        "number": t.number,
        "subject": t.subject,
        "status": t.status,
        "queue": t.queue,
        "priority": t.priority,
        "requester": t.requester,
        "requester_name": t.requester_name,
        "language": t.language,
        "helpdesk_address": t.helpdesk_address,
        "authorization": t.authorization,
        "account": account,
        "priority_reason": t.priority_reason,
        "assignee": t.assignee,
        "first_response_due": iso(t.first_response_due),
        "first_response_at": iso(t.first_response_at),
        "escalated_at": iso(t.escalated_at),
        "eta": iso(t.eta_at),
        "eta_reason": t.eta_reason,
        "resolved_at": iso(t.resolved_at),
        "closed_at": iso(t.closed_at),
        "created_at": iso(t.created_at),
        "updated_at": iso(t.updated_at),
    }


def ticket_doc(
    session: Session,
    number: int,
    article: Callable[[Article], dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """Ticket NUMBER with its articles, participants and events (what `ticket show`
    prints; bench/lookup.py times it), or None when there is no such ticket.

    ``article`` shapes each article (default ``article_json``; the API adds ids)."""
    # Articles and their attachments in two queries, not one per article.
    t = session.scalar(
        select(Ticket)
        .where(Ticket.number == number)
        .options(selectinload(Ticket.articles).selectinload(Article.attachments))
    )
    if t is None:
        return None
    login = session.scalar(select(Account.login).where(Account.id == t.account_id))
    doc = ticket_json(t, login)
    linked = session.get(Ticket, t.linked_ticket_id) if t.linked_ticket_id else None
    doc["linked_ticket"] = linked.number if linked else None
    doc["participants"] = correlate.participants(session, t.id)
    doc["articles"] = [(article or article_json)(a) for a in t.articles]
    events = session.scalars(select(Event).where(Event.ticket_id == t.id).order_by(Event.id))
    doc["events"] = [event_json(e) for e in events]
    return doc


def event_json(e: Event) -> dict[str, Any]:
    return {
        "kind": e.kind,
        "reason": e.reason,
        "address": e.address,
        "detail": e.detail,
        "outbox_id": e.outbox_id,
        "inbound_id": e.inbound_id,
        "created_at": iso(e.created_at),
    }


def article_json(a: Article) -> dict[str, Any]:
    return {
        "direction": a.direction,
        "author": a.author,
        "subject": a.subject,
        "text": a.text,
        "internal": a.internal,
        "auth": a.auth,
        "message_id": a.message_id,
        "created_at": iso(a.created_at),
        "attachments": [
            {
                "filename": x.filename,
                "content_type": x.content_type,
                "size": x.size,
                "sha256": x.sha256,
            }
            for x in a.attachments
        ],
    }


def article_detail(a: Article) -> dict[str, Any]:
    """An article as ``ticket show`` prints it, with its id, full text and attachment ids
    (the API's and the webhooks' shape)."""
    doc = article_json(a)
    doc["id"] = a.id
    doc["body_text"] = a.body_text
    doc["attachments"] = [
        {
            "id": x.id,
            "filename": x.filename,
            "content_type": x.content_type,
            "size": x.size,
            "sha256": x.sha256,
        }
        for x in a.attachments
    ]
    return doc
