"""The durable outbox: rendered mail waits here until a transport has taken it.

Rows are written in the same transaction as the ticket change that caused them, so a
crash can neither lose an acknowledgement nor send one for a ticket that was rolled
back.  ``flush`` claims due rows in a short transaction (pushing their
``next_attempt_at`` forward by a lease, so a crashed sender's rows come back), sends
outside any transaction, then records the outcome in another short transaction.
Temporary failures back off exponentially until ``lifetime_hours``; then, or on a 5xx,
the row is marked ``failed`` with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.errors import PermanentError, TemporaryError
from mailgate.replies.render import Rendered
from mailgate.runtime import Runtime
from mailgate.store.db import translate_db_errors
from mailgate.store.models import InboundMessage, OutboxMessage

log = logging.getLogger(__name__)

SEND_LEASE = timedelta(minutes=5)


def enqueue(
    session: Session,
    rt: Runtime,
    *,
    kind: str,
    ticket_id: int | None,
    mail_from: str,
    rcpt_to: list[str],
    rendered: Rendered,
    inbound_id: int | None = None,
) -> OutboxMessage:
    now = rt.clock()
    row = OutboxMessage(
        kind=kind,
        ticket_id=ticket_id,
        inbound_id=inbound_id,
        mail_from=mail_from,
        rcpt_to=rcpt_to,
        message_id=rendered.message_id,
        raw=rendered.raw,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(row)
    return row


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    kind: str
    inbound_id: int | None  # the trace id
    mail_from: str
    rcpt_to: list[str]
    raw: bytes
    key: str
    attempts: int
    created_at_age: timedelta


def flush(rt: Runtime, limit: int = 100) -> int:
    """Send what is due; return how many rows were attempted."""
    with translate_db_errors():
        claimed = _claim(rt, limit)
    if not claimed:
        return 0
    outcomes: dict[int, BaseException | None] = {}
    try:
        with rt.transport.connect() as conn:
            for item in claimed:
                try:
                    conn.send(item.mail_from, item.rcpt_to, item.raw, item.key)
                    outcomes[item.id] = None
                except (TemporaryError, PermanentError) as exc:
                    outcomes[item.id] = exc
    except (TemporaryError, PermanentError) as exc:
        # Could not even open the session: every unsent row shares the failure.
        for item in claimed:
            outcomes.setdefault(item.id, exc)
    with translate_db_errors():
        _record(rt, claimed, outcomes)
    return len(claimed)


def _claim(rt: Runtime, limit: int) -> list[_Claimed]:
    now = rt.clock()
    with rt.sessions.begin() as session:
        rows = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now)
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        claimed = []
        for row in rows:
            row.next_attempt_at = now + SEND_LEASE
            claimed.append(
                _Claimed(
                    id=row.id,
                    kind=row.kind,
                    inbound_id=row.inbound_id,
                    mail_from=row.mail_from,
                    rcpt_to=list(row.rcpt_to),
                    raw=row.raw,
                    key=f"{row.id:010d}.{row.message_id.partition('@')[0]}",
                    attempts=row.attempts,
                    created_at_age=now - row.created_at,
                )
            )
    return claimed


def _record(
    rt: Runtime, claimed: list[_Claimed], outcomes: dict[int, BaseException | None]
) -> None:
    out = rt.settings.outbound
    now = rt.clock()
    lifetime = timedelta(hours=out.lifetime_hours)
    results: list[tuple[_Claimed, str]] = []
    acked: list[int] = []  # inbound ids whose acknowledgement just left
    with rt.sessions.begin() as session:
        for item in claimed:
            row = session.get(OutboxMessage, item.id)
            if row is None:
                continue
            error = outcomes.get(item.id)
            row.attempts = item.attempts + 1
            trace = {"trace": item.inbound_id}
            if error is None:
                row.status = "sent"
                row.sent_at = now
                row.last_error = None
                results.append((item, "sent"))
                if item.kind == "ack" and item.inbound_id is not None:
                    acked.append(item.inbound_id)
                log.info(
                    "outbox id=%s %s sent to %s", item.id, item.kind, item.rcpt_to, extra=trace
                )
                continue
            row.last_error = str(error)[:2000]
            if isinstance(error, PermanentError) or item.created_at_age >= lifetime:
                row.status = "failed"
                results.append((item, "failed"))
                log.error("outbox id=%s failed permanently: %s", item.id, error, extra=trace)
            else:
                delay = min(out.retry_base_seconds * 2 ** (row.attempts - 1), out.retry_max_seconds)
                row.next_attempt_at = now + timedelta(seconds=delay)
                results.append((item, "retry"))
                log.warning("outbox id=%s retry in %ss: %s", item.id, delay, error, extra=trace)
        received = (
            dict(
                session.execute(
                    select(InboundMessage.id, InboundMessage.received_at).where(
                        InboundMessage.id.in_(acked)
                    )
                ).all()
            )
            if acked
            else {}
        )
    # Counted after the commit, so a rolled-back bookkeeping transaction counts nothing.
    for item, result in results:
        rt.metrics.outbox.labels(item.kind, result).inc()
    for received_at in received.values():
        rt.metrics.receipt_to_ack.observe(max((now - received_at).total_seconds(), 0.0))
