"""What a bounce or an automatic reply to our mail means for the mail that caused it.

The pipeline calls ``find_origin`` for inbound mail classified as a bounce or an
automatic reply: the outbox row it answers, found by the VERP envelope recipient
(``bounces+<id>.<tag>@``, HMAC-checked) or by one of our own outgoing Message-IDs
quoted in the message (DSNs attach the returned mail or its headers).  The origin
threads the mail onto the row's ticket as a quiet internal note.

``record`` then acts on a bounce, in the pipeline's transaction:

* permanent failure (``Action: failed`` / 5.x.x): the row becomes ``bounced`` with
  status, action and diagnostic; the ticket gets an event; the address is suppressed
  for ``limits.suppress_days``; and the first time (per suppression) the account's
  admin mailbox is told — today that is ``[helpdesk] postmaster``, see
  ``admin_address_for``;
* temporary (``Action: delayed`` / 4.x.x): recorded on the row and ticket, nothing else;
* a bounce that cannot be tied to a mail of ours changes nothing: anyone can write a
  bounce, and a forged one must not be able to silence a customer's address.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.parse.message import Bounce
from mailgate.replies import notes, outbox, verp
from mailgate.store.models import OutboxMessage, Suppression, Ticket
from mailgate.store.states import OutboxStatus
from mailgate.tickets.context import TicketContext
from mailgate.tickets.correlate import Match, Threading

log = logging.getLogger(__name__)

SCAN_BYTES = 512 * 1024  # the returned headers follow the report within a few KiB
MAX_IDS = 50
_MSG_ID = re.compile(rb"<([^<>\s@]{1,200}@[A-Za-z0-9.-]{1,255})>")


@dataclass(frozen=True, slots=True)
class Origin:
    outbox_id: int
    ticket_id: int | None
    number: int | None
    recipient: str
    how: str  # "verp" | "message-id"

    def threading(self) -> Threading | None:
        if self.ticket_id is None or self.number is None:
            return None
        return Threading(Match(self.ticket_id, self.number, f"origin-{self.how}"))


def find_origin(
    session: Session,
    rt: TicketContext,
    rcpt_to: tuple[str, ...],
    raw: bytes,
    own_domains: frozenset[str],
) -> Origin | None:
    local = rt.settings.outbound.verp_local_part
    for address in rcpt_to:
        outbox_id = verp.parse(address, local, rt.verp_key)
        if outbox_id is not None:
            row = session.get(OutboxMessage, outbox_id)
            if row is not None:
                return _origin(session, row, "verp")
    ids = [
        m.decode("ascii", "replace")
        for m in dict.fromkeys(_MSG_ID.findall(raw[:SCAN_BYTES]))
        if m.rpartition(b"@")[2].decode("ascii", "replace").lower() in own_domains
    ][:MAX_IDS]
    if not ids:
        return None
    rows = {
        r.message_id: r
        for r in session.scalars(select(OutboxMessage).where(OutboxMessage.message_id.in_(ids)))
    }
    for message_id in ids:  # the first one quoted is the returned mail's own id
        if message_id in rows:
            return _origin(session, rows[message_id], "message-id")
    return None


def _origin(session: Session, row: OutboxMessage, how: str) -> Origin:
    number = None
    if row.ticket_id is not None:
        number = session.scalar(select(Ticket.number).where(Ticket.id == row.ticket_id))
    return Origin(row.id, row.ticket_id, number, row.recipient, how)


def record(
    session: Session,
    rt: TicketContext,
    bounce: Bounce | None,
    origin: Origin | None,
    inbound_id: int,
) -> tuple[str, ...]:
    """Act on a bounce; return rule hits that say what was done."""
    if origin is None:
        return ("bounce:untraced",)
    row = session.get_one(OutboxMessage, origin.outbox_id)
    now = rt.clock()
    status = bounce.status if bounce else None
    action = bounce.action if bounce else None
    kind = _severity(status, action)
    if kind == "success":
        return (f"bounce:report-{action}",)
    diagnostic = (bounce.diagnostic if bounce else None) or ""
    row.delivery_status = status
    row.delivery_action = action or ("failed" if kind == "permanent" else "unknown")
    row.delivery_detail = diagnostic[:2000] or None
    row.delivery_reported_at = now
    detail = f"{row.kind} to {row.recipient}: {status or 'no status'} {action or ''}".rstrip()
    if diagnostic:
        detail += f" — {diagnostic[:500]}"
    reason = f"dsn:{status or 'unknown'}"
    event = partial(
        notes.event,
        session,
        now,
        ticket_id=row.ticket_id,
        outbox_id=row.id,
        inbound_id=inbound_id,
        address=row.recipient,
        detail=detail,
    )
    if kind == "temporary":
        event("delay", reason)
        return ("bounce:delayed",)
    if kind == "unknown":
        # Neither status nor action: keep what we learnt, but act only on certainty.
        event("bounce", reason)
        return ("bounce:unclear",)
    row.status = OutboxStatus.BOUNCED
    row.reason = reason
    event("bounce", reason)
    hits = ["bounce:permanent"]
    if _suppress(session, rt, row, reason, diagnostic, now):
        hits.append("address-suppressed")
        hits.append(_tell_admin(session, rt, row, status, now))
    return tuple(hits)


def _severity(status: str | None, action: str | None) -> str:
    if action in ("delivered", "relayed", "expanded"):
        return "success"
    if action == "failed" or (status or "").startswith("5"):
        return "permanent"
    if action == "delayed" or (status or "").startswith("4"):
        return "temporary"
    return "unknown"


def _suppress(
    session: Session,
    rt: TicketContext,
    row: OutboxMessage,
    reason: str,
    diagnostic: str,
    now: datetime,
) -> bool:
    """Suppress the row's recipient; True when that is news (the admin must hear)."""
    until = now + timedelta(days=rt.settings.limits.suppress_days)
    existing = session.scalar(select(Suppression).where(Suppression.address == row.recipient))
    if existing is not None and existing.until > now:
        existing.until = max(existing.until, until)
        return existing.notified_at is None
    if existing is None:
        existing = Suppression(address=row.recipient, created_at=now)
        session.add(existing)
    existing.reason = reason
    existing.detail = diagnostic[:2000]
    existing.outbox_id = row.id
    existing.ticket_id = row.ticket_id
    existing.created_at = now
    existing.until = until
    existing.notified_at = None
    log.warning("suppressing automatic mail to %s until %s (%s)", row.recipient, until, reason)
    return True


def admin_address_for(session: Session, ticket: Ticket | None) -> str | None:
    """The admin mailbox of the account a ticket belongs to.

    Accounts do not exist yet; when they do, this returns the account's verified
    admin address and the postmaster below becomes the fall-back.
    """
    return None


def _tell_admin(
    session: Session, rt: TicketContext, row: OutboxMessage, status: str | None, now: datetime
) -> str:
    ticket = session.get(Ticket, row.ticket_id) if row.ticket_id is not None else None
    to = admin_address_for(session, ticket) or rt.settings.helpdesk.postmaster or None
    suppression = session.scalar(select(Suppression).where(Suppression.address == row.recipient))
    assert suppression is not None
    event = partial(
        notes.event,
        session,
        now,
        "admin-notice",
        ticket_id=row.ticket_id,
        outbox_id=row.id,
        address=row.recipient,
    )
    if to is None:
        event(
            "no-admin-address",
            detail=f"nobody was told that {row.recipient} is dead: set [helpdesk] postmaster",
        )
        return "admin-notice:nobody"
    from_address = ticket.helpdesk_address if ticket else next(iter(rt.settings.helpdesk.queues))
    rendered = rt.renderer.render(
        "bounce-notice",
        None,
        from_address=from_address,
        to=to,
        in_reply_to=None,
        references=(),
        clock=rt.clock,
        auto_submitted="auto-generated",
        address=row.recipient,
        status=status or "unknown",
        until=suppression.until.date().isoformat(),
        tag=rt.renderer.subject_tag(ticket.number) if ticket else "",
    )
    notice = outbox.enqueue(
        session, rt, kind="bounce-notice", ticket_id=row.ticket_id, rcpt_to=[to], rendered=rendered
    )
    suppression.notified_at = now
    event(
        "address-suppressed",
        detail=f"{to} was told that {row.recipient} is dead (outbox id {notice.id})",
    )
    return "admin-notice:sent"
