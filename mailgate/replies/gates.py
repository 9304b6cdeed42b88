"""The gates automatic mail must pass: suppression list, per-recipient limit, breaker.

``gate`` runs when an automatic mail is queued (in the transaction that queues it) and
answers with the reason it must not go out, or None.  In order:

* ``address-suppressed`` — the address bounced permanently within ``suppress_days``;
* ``circuit-breaker`` — the breaker is open: more than ``breaker_threshold`` automatic
  mails were queued within ``breaker_window_seconds`` (two gateways answering each
  other, a forwarding loop, a bug), so all automatic mail stops for
  ``breaker_cooldown_seconds``.  Opening it logs at ERROR and leaves an event;
* ``recipient-limit`` — ``acks_per_recipient_per_day`` automatic mails already went
  to this address within 24 hours (THREATS.md: stricter than OTRS and Zammad).  An
  acknowledgement that warns about a pasted password passes this one: a customer who
  hit the limit must still learn to change the password.

``held_many`` repeats the first two just before sending, so mail queued before a bounce or
before the breaker opened is stopped too.  Mail written by a person (operator replies)
is never gated, nor is a row an operator released with ``mailgate outbox retry``.

Counts read ``outbox_message`` itself: rows that were or will be attempted count,
suppressed and dropped ones do not.  Two workers on PostgreSQL may each let one mail
past a limit at the same instant; the limits are about loops, which that cannot feed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailgate.config import LimitSettings
from mailgate.replies import notes
from mailgate.store import memo
from mailgate.store.models import Event, OutboxMessage, Suppression

log = logging.getLogger(__name__)

COUNTED = ("pending", "sent", "failed", "bounced")
DAY = timedelta(hours=24)


def gate(
    session: Session,
    limits: LimitSettings,
    recipient: str,
    now: datetime,
    *,
    warning: bool = False,
) -> str | None:
    """Why this automatic mail must not go out, or None.  ``warning`` marks the one
    mail that passes the per-recipient limit: telling a customer that a password they
    mailed us must be changed (never to a suppressed address, never past the breaker)."""
    if suppressed_until(session, recipient, now) is not None:
        return "address-suppressed"
    window = _window(session, limits, now)
    if window.open:
        return "circuit-breaker"
    if (
        not warning
        and _automatic_since(session, now - DAY, recipient) >= limits.acks_per_recipient_per_day
    ):
        return "recipient-limit"
    if window.queued >= limits.breaker_threshold:
        _open_breaker(session, limits, window.queued, now)
        window.open = True
        return "circuit-breaker"
    window.queued += 1  # the caller queues this mail as pending: it counts from now on
    return None


@dataclass(slots=True)
class _Window:
    """The breaker's state as one session (a pipeline batch) sees it."""

    open: bool
    queued: int  # automatic mails counted in the window, at most the threshold


def _window(session: Session, limits: LimitSettings, now: datetime) -> _Window:
    """Read the breaker's state once per session and count forward from there.

    Every automatic mail of a batch used to ask the database whether the breaker was
    open and how full its window was; now the batch asks once and adds the mails it
    queues itself.  Mail queued meanwhile by another worker is seen by the next batch
    — the breaker is about loops, which a few mails either way cannot feed.
    """

    def load() -> _Window:
        since = now - timedelta(seconds=limits.breaker_window_seconds)
        # Bounded by the threshold: the cost never grows with what the window holds.
        recent = (
            select(OutboxMessage.id)
            .where(
                OutboxMessage.automatic.is_(True),
                OutboxMessage.status.in_(COUNTED),
                OutboxMessage.created_at > since,
            )
            .limit(limits.breaker_threshold)
            .subquery()
        )
        queued = int(session.scalar(select(func.count()).select_from(recent)) or 0)
        return _Window(breaker_open_since(session, limits, now) is not None, queued)

    return memo.remember(session, "breaker-window", load)


def held_many(
    session: Session, limits: LimitSettings, recipients: list[str], now: datetime
) -> dict[str, str]:
    """Suppression and breaker for a batch of recipients in two queries: recipient →
    reason."""
    if not recipients:
        return {}
    if breaker_open_since(session, limits, now) is not None:
        return {r: "circuit-breaker" for r in recipients}
    suppressed = set(
        session.scalars(
            select(Suppression.address).where(
                Suppression.address.in_({r.lower() for r in recipients}), Suppression.until > now
            )
        )
    )
    return {r: "address-suppressed" for r in recipients if r.lower() in suppressed}


def suppressed_until(session: Session, address: str, now: datetime) -> datetime | None:
    return session.scalar(
        select(Suppression.until).where(
            Suppression.address == address.lower(), Suppression.until > now
        )
    )


def breaker_open_since(session: Session, limits: LimitSettings, now: datetime) -> datetime | None:
    cooldown = timedelta(seconds=limits.breaker_cooldown_seconds)
    return session.scalar(
        select(func.max(Event.created_at)).where(
            Event.kind == "breaker-open", Event.created_at > now - cooldown
        )
    )


def _automatic_since(session: Session, since: datetime, recipient: str) -> int:
    query = (
        select(func.count())
        .select_from(OutboxMessage)
        .where(
            OutboxMessage.automatic.is_(True),
            OutboxMessage.status.in_(COUNTED),
            OutboxMessage.created_at > since,
        )
    )
    query = query.where(OutboxMessage.recipient == recipient.lower())
    return int(session.scalar(query) or 0)


def _open_breaker(session: Session, limits: LimitSettings, recent: int, now: datetime) -> None:
    detail = (
        f"at least {recent} automatic mails queued in the last {limits.breaker_window_seconds} s "
        f"(threshold {limits.breaker_threshold}); all automatic mail is stopped for "
        f"{limits.breaker_cooldown_seconds} s. Look for two systems answering each other."
    )
    log.error("circuit breaker open: %s", detail)
    notes.event(session, now, "breaker-open", "automatic-mail-rate", detail=detail)
