"""The durable outbox: rendered mail waits here until a transport has taken it.

Rows are written in the same transaction as the ticket change that caused them, so a
crash can neither lose an acknowledgement nor send one for a ticket that was rolled
back.  Automatic mail passes ``gates.gate`` as it is queued; a mail that must not go
out is kept as a ``suppressed`` row with its reason (and an event on its ticket), never
dropped silently.  Automatic mail gets a VERP envelope sender naming its row when a
VERP key is configured, so its bounces find their way back (``replies.bounces``).

``flush`` claims due rows in a short transaction (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, pushing ``next_attempt_at`` forward by a lease, so several senders never
take the same row and a crashed sender's rows come back), re-checks the suppression
list and the circuit breaker, signs (DKIM) and sends outside any transaction, then
records the outcome in another short transaction.  Temporary failures back off
exponentially (``retry_base_seconds`` · 2^(attempt-1), capped) until
``lifetime_hours``; then, or on a 5xx, the row is ``failed`` with the reason, and its
ticket gets an internal note.  A relay that cannot be reached at all is the relay's
fault, not the mail's: one batch probes it now and then, the rest wait without
growing their backoff, and everything goes within about a minute of its return.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import dkim
from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from mailgate.errors import PermanentError, TemporaryError
from mailgate.replies import gates, notes, verp
from mailgate.replies.context import QueueContext, SendContext
from mailgate.replies.render import Rendered
from mailgate.store.db import translate_db_errors
from mailgate.store.models import InboundMessage, OutboxMessage

log = logging.getLogger(__name__)

SEND_LEASE = timedelta(minutes=5)
# While the relay is unreachable: how often a batch probes it, and the longest a row
# that failed only because of that waits for its next try.
PROBE_INTERVAL = timedelta(seconds=15)
OUTAGE_RETRY = timedelta(seconds=60)


def enqueue(
    session: Session,
    rt: QueueContext,
    *,
    kind: str,
    ticket_id: int | None,
    rcpt_to: list[str],
    rendered: Rendered,
    mail_from: str | None = None,
    automatic: bool = True,
    inbound_id: int | None = None,
) -> OutboxMessage:
    """Queue one mail to one recipient; the row is ``suppressed`` when a gate says no.

    ``mail_from=None`` lets the outbox choose the envelope sender of automatic mail:
    a VERP address when a key is configured, else the null sender (RFC 3834 §3.3).
    ``automatic=False`` is for mail a person wrote; it is never limited.
    ``inbound_id`` names the message this mail answers (the trace id).
    """
    if len(rcpt_to) != 1:
        raise ValueError("an outbox row carries exactly one recipient")
    now = rt.clock()
    recipient = rcpt_to[0].lower()
    reason = gates.gate(session, rt.settings.limits, recipient, now) if automatic else None
    row = OutboxMessage(
        kind=kind,
        automatic=automatic,
        ticket_id=ticket_id,
        inbound_id=inbound_id,
        mail_from=mail_from or "",
        rcpt_to=list(rcpt_to),
        recipient=recipient,
        message_id=rendered.message_id,
        raw=rendered.raw,
        status="suppressed" if reason else "pending",
        reason=reason,
        attempts=0,
        released=False,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(row)
    session.flush()
    # Operator mail gets a VERP sender too: its bounces must find their ticket as well.
    if mail_from is None and rt.verp_key is not None:
        # Render puts the From domain in the Message-ID; bounces go back there.
        domain = rendered.message_id.rpartition("@")[2]
        out = rt.settings.outbound
        row.mail_from = verp.address(row.id, domain, out.verp_local_part, rt.verp_key)
    if reason is not None:
        _suppress(session, row, reason, now)
    return row


def _suppress(session: Session, row: OutboxMessage, reason: str, now: datetime) -> None:
    row.status = "suppressed"
    row.reason = reason
    log.warning("outbox id=%s (%s to %s) suppressed: %s", row.id, row.kind, row.recipient, reason)
    notes.event(
        session,
        now,
        "suppressed",
        reason,
        ticket_id=row.ticket_id,
        outbox_id=row.id,
        address=row.recipient,
        detail=f"{row.kind} to {row.recipient} was not sent: {reason}",
    )


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


class Dispatcher:
    """Runs ``flush`` and keeps the outcomes it could not write down.

    When the bookkeeping after a send fails (the database full or away), the rows stay
    claimed until their send lease runs out — minutes — and would then be sent again.
    The dispatcher holds on to those outcomes and records them first thing on its next
    call, so as soon as the database takes writes again a mail that left is marked
    sent, and one that did not goes back on its retry schedule.

    While the relay cannot be reached at all, only one batch every ``PROBE_INTERVAL``
    tries it (the probe); the rest wait untouched, so a long outage costs neither CPU
    nor backoff.  Rows of a batch that failed that way retry within ``OUTAGE_RETRY``
    however often they failed: when the relay comes back, everything due goes within
    a probe interval plus that.
    """

    def __init__(self, rt: SendContext) -> None:
        self.rt = rt
        self.unrecorded: _Outcomes | None = None

    def flush(self, limit: int = 100) -> int:
        """Send what is due; return how many due rows were handled (sent, tried or held).

        Raises ``TemporaryError`` when the database cannot be written; call again later.
        """
        rt = self.rt
        health = rt.relay_health
        now = rt.clock()
        with translate_db_errors():
            if self.unrecorded is not None:
                _record(rt, self.unrecorded)
                self.unrecorded = None
            if (
                health.down_since is not None
                and health.last_try is not None
                and now - health.last_try < PROBE_INTERVAL
            ):
                return 0
            claimed, held = _claim(rt, limit)
        if not claimed:
            return held
        health.last_try = now
        outcomes = _send(rt, claimed)
        try:
            with translate_db_errors():
                _record(rt, outcomes)
        except TemporaryError:
            self.unrecorded = outcomes
            raise
        return len(claimed) + held


def flush(rt: SendContext, limit: int = 100) -> int:
    """One pass by a short-lived dispatcher (tests, ``mailgate drain``)."""
    return Dispatcher(rt).flush(limit)


@dataclass(frozen=True, slots=True)
class _Outcomes:
    """What became of each claimed mail: None when sent, else the error."""

    claimed: list[_Claimed]
    errors: dict[int, BaseException | None]
    unreachable: bool  # the relay could not be reached at all: not the mails' fault


def _send(rt: SendContext, claimed: list[_Claimed]) -> _Outcomes:
    """Hand each claimed mail to the transport, outside any transaction."""
    health = rt.relay_health
    outcomes: dict[int, BaseException | None] = {}
    unreachable = False
    try:
        with rt.transport.connect() as conn:
            if health.down_since is not None:
                log.warning("relay reachable again (down since %s)", health.down_since)
                health.down_since = None
            for item in claimed:
                try:
                    conn.send(item.mail_from, item.rcpt_to, _signed(rt, item), item.key)
                    outcomes[item.id] = None
                except (TemporaryError, PermanentError) as exc:
                    outcomes[item.id] = exc
    except (TemporaryError, PermanentError) as exc:
        # Could not even open the session: every unsent row shares the failure.
        unreachable = not outcomes
        if unreachable and health.down_since is None:
            log.warning("relay unreachable: %s; probing every %s", exc, PROBE_INTERVAL)
            health.down_since = rt.clock()
        for item in claimed:
            outcomes.setdefault(item.id, exc)
    return _Outcomes(claimed, outcomes, unreachable)


def _signed(rt: SendContext, item: _Claimed) -> bytes:
    try:
        return rt.signer.sign(item.raw)
    except dkim.DKIMException as exc:
        # The keys were parsed at start-up; a failure here is worth a retry, not a send
        # without the signature receivers were promised.
        raise TemporaryError(f"DKIM signing failed: {exc}") from exc


def _claim(rt: SendContext, limit: int) -> tuple[list[_Claimed], int]:
    now = rt.clock()
    with rt.sessions.begin() as session:
        rows = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now)
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        lease = send_lease(rt, len(rows))
        claimed = []
        held = 0
        gated = [r.recipient for r in rows if r.automatic and not r.released]
        holds = gates.held_many(session, rt.settings.limits, gated, now)
        for row in rows:
            if row.automatic and not row.released:
                reason = holds.get(row.recipient)
                if reason is not None:
                    _suppress(session, row, reason, now)
                    held += 1
                    continue
            row.next_attempt_at = now + lease
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
    return claimed, held


def send_lease(rt: SendContext, batch: int) -> timedelta:
    """How long claimed rows stay ours: long enough for every message of the batch to
    time out one after the other, so no second sender takes a row still being sent."""
    return SEND_LEASE + timedelta(seconds=rt.settings.outbound.timeout * batch)


def _record(rt: SendContext, outcomes: _Outcomes) -> None:
    claimed = outcomes.claimed
    out = rt.settings.outbound
    now = rt.clock()
    lifetime = timedelta(hours=out.lifetime_hours)
    results: list[tuple[_Claimed, str]] = []
    acked: list[int] = []  # inbound ids whose acknowledgement just left
    with rt.sessions.begin() as session:
        # The rows without their raw bytes (the claim carried them), all in one query;
        # held in a variable because the identity map keeps only weak references.
        rows = {
            row.id: row
            for row in session.scalars(
                select(OutboxMessage)
                .options(defer(OutboxMessage.raw))
                .where(OutboxMessage.id.in_([item.id for item in claimed]))
            )
        }
        for item in claimed:
            row = rows.get(item.id)
            if row is None or row.status != "pending" or row.attempts != item.attempts:
                continue  # our lease ran out and another sender has taken the row over
            error = outcomes.errors.get(item.id)
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
            if isinstance(error, PermanentError):
                _give_up(session, row, error.reason, now)
                results.append((item, "failed"))
            elif item.created_at_age >= lifetime:
                _give_up(session, row, "lifetime-expired", now)
                results.append((item, "failed"))
            else:
                delay = min(out.retry_base_seconds * 2 ** (row.attempts - 1), out.retry_max_seconds)
                if outcomes.unreachable:  # the relay's fault, not the mail's: probes pace it
                    delay = min(delay, int(OUTAGE_RETRY.total_seconds()))
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


def _give_up(session: Session, row: OutboxMessage, reason: str, now: datetime) -> None:
    row.status = "failed"
    row.reason = reason
    log.error(
        "outbox id=%s failed permanently (%s): %s",
        row.id,
        reason,
        row.last_error,
        extra={"trace": row.inbound_id},
    )
    detail = (
        f"The {row.kind} to {row.recipient} could not be delivered after "
        f"{row.attempts} attempt(s) ({reason}): {row.last_error}"
    )
    notes.event(
        session,
        now,
        "send-failed",
        reason,
        ticket_id=row.ticket_id,
        outbox_id=row.id,
        address=row.recipient,
        detail=detail,
    )
    if row.ticket_id is not None:
        notes.internal_note(session, row.ticket_id, now, "Delivery failed", detail)
