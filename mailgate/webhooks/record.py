"""Recording webhook events in the transaction of the change they report.

``install`` hooks the runtime's sessions: after each flush the new tickets and
articles, tickets whose status, priority, queue, assignee or authorization changed, and
messages put in quarantine are noted on the session; just before the commit one
``webhook_event`` row per subscribed URL is added with a snapshot of the ticket (and
article), and commits with the change.  A rollback forgets the notes, so an event is
never told about a change that did not happen, and a committed change always has its
event.
"""

from __future__ import annotations

import uuid
import weakref
from datetime import datetime
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, sessionmaker

from mailgate.store.models import Account, Article, InboundMessage, Ticket, WebhookEvent
from mailgate.store.states import InboundStatus
from mailgate.tickets.documents import article_detail, iso, ticket_json
from mailgate.webhooks.context import WebhookContext

NOTES = "mailgate_webhook_notes"
# The session factories already hooked (a daemon restarted on the same runtime in tests).
_INSTALLED: weakref.WeakSet[sessionmaker[Session]] = weakref.WeakSet()
WATCHED = ("status", "priority", "queue", "assignee", "authorization", "eta_at")


def install(rt: WebhookContext) -> None:
    """Record events for ``rt.settings.webhooks`` (read at each commit: a reload counts).

    Once per runtime: a second call leaves the hooks as they are.
    """
    if rt.sessions in _INSTALLED:
        return
    _INSTALLED.add(rt.sessions)

    def noticed(session: Session, _context: Any) -> None:
        if rt.settings.webhooks:
            _note(session)

    def committing(session: Session) -> None:
        if not rt.settings.webhooks:
            return
        # What was added since the last flush is noted by this flush: the commit's own
        # flush comes after this hook.
        session.flush()
        notes: dict[str, list[Any]] | None = session.info.pop(NOTES, None)
        if notes and rt.settings.webhooks:
            _write(session, rt, notes)

    def forget(session: Session, *_: Any) -> None:
        session.info.pop(NOTES, None)

    event.listen(rt.sessions, "after_flush", noticed)
    event.listen(rt.sessions, "before_commit", committing)
    event.listen(rt.sessions, "after_rollback", forget)
    event.listen(rt.sessions, "after_commit", forget)


def _note(session: Session) -> None:
    """What this flush changed (the session's lists still show the pre-flush state)."""
    notes = session.info.setdefault(NOTES, {"created": [], "articles": [], "updated": []})
    notes.setdefault("quarantined", [])
    for obj in session.new:
        if isinstance(obj, Ticket):
            notes["created"].append(obj)
        elif isinstance(obj, Article):
            notes["articles"].append(obj)
        elif isinstance(obj, InboundMessage) and obj.status == InboundStatus.QUARANTINED:
            notes["quarantined"].append(obj)
    for obj in session.dirty:
        state = inspect(obj)
        if isinstance(obj, Ticket):
            if any(state.attrs[name].history.has_changes() for name in WATCHED):
                notes["updated"].append(obj)
        elif isinstance(obj, InboundMessage):
            added = state.attrs["status"].history.added
            if InboundStatus.QUARANTINED in added:
                notes["quarantined"].append(obj)


def _write(session: Session, rt: WebhookContext, notes: dict[str, list[Any]]) -> None:
    now = rt.clock()
    created = _unique(notes["created"])
    events: list[tuple[str, dict[str, Any]]] = []
    for ticket in created:
        events.append(("ticket.created", {"ticket": _ticket(session, ticket)}))
    for article in _unique(notes["articles"]):
        ticket = session.get_one(Ticket, article.ticket_id)
        events.append(
            (
                "article.created",
                {"ticket": _ticket(session, ticket), "article": article_detail(article)},
            )
        )
    for ticket in _unique(notes["updated"]):
        if ticket not in created:
            events.append(("ticket.updated", {"ticket": _ticket(session, ticket)}))
    for message in _unique(notes["quarantined"]):
        events.append(("message.quarantined", {"ticket": None, "message": _message(message)}))
    for kind, body in events:
        _add(session, rt, now, kind, body)


def _add(
    session: Session, rt: WebhookContext, now: datetime, kind: str, body: dict[str, Any]
) -> None:
    event_id = str(uuid.uuid4())
    ticket_id = body["ticket"].pop("_id") if body.get("ticket") else None
    payload = {"id": event_id, "type": kind, "created_at": iso(now), **body}
    for hook in rt.settings.webhooks:
        if kind in hook.events:
            session.add(
                WebhookEvent(
                    event_id=event_id,
                    url=hook.url,
                    type=kind,
                    ticket_id=ticket_id,
                    payload=payload,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )


def _unique(items: list[Any]) -> list[Any]:
    """Each object once, in the order the database numbered them."""
    seen = {id(x): x for x in items}
    return sorted(seen.values(), key=lambda x: x.id)


def _ticket(session: Session, ticket: Ticket) -> dict[str, Any]:
    account = session.get(Account, ticket.account_id) if ticket.account_id else None
    doc = ticket_json(ticket, account.login if account else None)
    doc["_id"] = ticket.id  # taken off again before it is stored
    return doc


def _message(m: InboundMessage) -> dict[str, Any]:
    return {
        "id": m.id,
        "reason": m.reason,
        "mail_from": m.mail_from,
        "received_at": iso(m.received_at),
    }
