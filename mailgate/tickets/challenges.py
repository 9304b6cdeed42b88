"""Confirmation challenges: asking an account's admin mailbox whether a request is theirs.

A challenge carries a token of 128 random bits that exists only in the mail sent to the
admin address; the database keeps its SHA-256.  The admin answers either by replying to
the mail (the token rides in the Reply-To address, ``support+confirm-<token>@…``) with
a yes or no on the first line, or on the confirm page (GET shows it; only POST acts,
because mail scanners open links).  A challenge is single use across all its tokens
(the reminder carries a fresh one): the first answer wins in one conditional UPDATE, so
twenty concurrent confirmations produce exactly one success.  Expiry is checked at use
and by a scheduled job, which also sends one reminder.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailgate.replies import notify
from mailgate.store.db import translate_db_errors
from mailgate.store.models import Challenge, Ticket
from mailgate.store.states import ChallengeOutcome
from mailgate.tickets.context import TicketContext
from mailgate.verify import directory

log = logging.getLogger(__name__)

TOKEN_BYTES = 16  # 128 bits
_CONFIRM_ADDRESS = re.compile(r"^[^@+\s]+\+confirm-([0-9a-f]{32})@", re.IGNORECASE)
_YES = ("yes", "confirm", "tak", "potwierdzam", "áno", "ano", "súhlasím", "souhlasím", "да",
        "подтверждаю", "ok")  # fmt: skip
_NO = ("no", "refuse", "nie", "odmawiam", "nie súhlasím", "ne", "nesouhlasím", "нет",
       "отказ", "отклоняю")  # fmt: skip

Action = Literal["confirm", "refuse"]
Result = Literal["confirmed", "refused", "invalid", "expired", "used", "wrong-sender"]


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    ticket_number: int | None = None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.lower().encode()).hexdigest()


def confirm_address(helpdesk_address: str, token: str) -> str:
    local, _, domain = helpdesk_address.partition("@")
    return f"{local}+confirm-{token}@{domain}"


def find_token(addresses: Iterable[str]) -> str | None:
    """The token of a confirm address among recipients, if any."""
    for address in addresses:
        match = _CONFIRM_ADDRESS.match(address.strip())
        if match:
            return match.group(1).lower()
    return None


def read_answer(text: str) -> Action | None:
    """Yes or no from the first non-empty line of a reply; None when it says neither."""
    for line in text.splitlines():
        words = [w.strip(".!,;:-") for w in line.strip().lower().split()]
        if not words:
            continue
        first = " ".join(words[:2])
        if words[0] in _NO or first in _NO:
            return "refuse"
        if words[0] in _YES:
            return "confirm"
        return None
    return None


def open_challenge(
    session: Session,
    rt: TicketContext,
    ticket: Ticket,
    match: directory.AccountMatch,
    requester_name: str,
    *,
    reminder: bool = False,
) -> None:
    """Record a challenge for ``ticket`` and queue the mail to the admin mailbox."""
    assert match.admin_address is not None
    token = secrets.token_hex(TOKEN_BYTES)
    now = rt.clock()
    expires = now + timedelta(hours=rt.settings.verify.challenge_hours)
    if reminder:
        expires = (
            session.scalar(
                select(Challenge.expires_at).where(Challenge.ticket_id == ticket.id).limit(1)
            )
            or expires
        )
    session.add(
        Challenge(
            token_hash=token_hash(token),
            ticket_id=ticket.id,
            account_id=match.account_id,
            admin_address=match.admin_address,
            requester=ticket.requester,
            created_at=now,
            expires_at=expires,
            reminded_at=now if reminder else None,
        )
    )
    notify.send(
        session,
        rt,
        ticket,
        kind="challenge",
        to=match.admin_address,
        language=match.language or ticket.language,
        reply_to=confirm_address(ticket.helpdesk_address, token),
        internal=True,
        record=(
            f"Confirmation {'reminder' if reminder else 'request'} sent to the "
            f"administrative address of account {match.login}."
        ),
        context={
            "reminder": reminder,
            "login": match.login,
            "requester": ticket.requester,
            "requester_name": requester_name,
            "subject": ticket.subject[:200],
            "confirm_url": f"{rt.settings.public_url}/confirm/{token}",
            "expires": expires.strftime("%Y-%m-%d %H:%M UTC"),
        },
    )


def lookup(session: Session, token: str) -> Challenge | None:
    """The challenge for a token, compared in constant time."""
    wanted = token_hash(token)
    row = session.scalar(select(Challenge).where(Challenge.token_hash == wanted))
    if row is None or not hmac.compare_digest(row.token_hash, wanted):
        return None
    return row


def answer(
    session: Session,
    rt: TicketContext,
    token: str,
    action: Action,
    *,
    trust: bool = False,
    sender: str | None = None,
) -> Outcome:
    """Apply the admin's answer.  ``sender`` is checked for replies by mail."""
    row = lookup(session, token)
    if row is None:
        return Outcome("invalid")
    number = session.get_one(Ticket, row.ticket_id).number
    if sender is not None and sender.lower() != row.admin_address:
        return Outcome("wrong-sender", number)
    now = rt.clock()
    if row.used_at is not None:
        return Outcome("used", number)
    if row.expires_at <= now:
        return Outcome("expired", number)
    outcome = ChallengeOutcome.CONFIRMED if action == "confirm" else ChallengeOutcome.REFUSED
    claimed = session.execute(
        update(Challenge)
        .where(
            Challenge.ticket_id == row.ticket_id,
            Challenge.used_at.is_(None),
            Challenge.expires_at > now,
        )
        .values(used_at=now, outcome=outcome)
        .execution_options(synchronize_session=False)
    )
    if not claimed.rowcount:  # type: ignore[attr-defined]
        return Outcome("used", number)
    ticket = session.get_one(Ticket, row.ticket_id)
    ticket.authorization = "authorized" if action == "confirm" else "refused"
    ticket.updated_at = now
    if trust and action == "confirm":
        login = directory.login_of(session, row.account_id)
        directory.upsert(
            session,
            directory.AccountSpec(
                login=login, admin=row.admin_address, addresses=((row.requester, "technical"),)
            ),
            now,
        )
    _tell_requester(session, rt, ticket, outcome)
    log.info("challenge for ticket %s %s", ticket.number, outcome)
    return Outcome(outcome, ticket.number)  # type: ignore[arg-type]


def _tell_requester(session: Session, rt: TicketContext, ticket: Ticket, outcome: str) -> None:
    notify.send(
        session,
        rt,
        ticket,
        kind="challenge_result",
        to=ticket.requester,
        language=ticket.language,
        context={"outcome": outcome},
    )


def sweep(rt: TicketContext) -> tuple[int, int]:
    """Scheduled: expire overdue challenges and send one reminder; (expired, reminded)."""
    now = rt.clock()
    remind_before = now - timedelta(hours=rt.settings.verify.reminder_hours)
    expired = reminded = 0
    with translate_db_errors(), rt.sessions.begin() as session:
        due = session.scalars(
            select(Challenge).where(Challenge.used_at.is_(None), Challenge.expires_at <= now)
        ).all()
        for ticket_id in dict.fromkeys(c.ticket_id for c in due):
            session.execute(
                update(Challenge)
                .where(Challenge.ticket_id == ticket_id, Challenge.used_at.is_(None))
                .values(used_at=now, outcome=ChallengeOutcome.EXPIRED)
                .execution_options(synchronize_session=False)
            )
            ticket = session.get_one(Ticket, ticket_id)
            if ticket.authorization == "awaiting_confirmation":
                ticket.authorization = "consultative"
                ticket.updated_at = now
            _tell_requester(session, rt, ticket, ChallengeOutcome.EXPIRED)
            expired += 1
        waiting = session.scalars(
            select(Challenge).where(
                Challenge.used_at.is_(None),
                Challenge.reminded_at.is_(None),
                Challenge.created_at <= remind_before,
                Challenge.expires_at > now,
            )
        ).all()
        for row in waiting:
            row.reminded_at = now
            ticket = session.get_one(Ticket, row.ticket_id)
            match = directory.match_for_challenge(session, row.account_id, row.admin_address)
            open_challenge(session, rt, ticket, match, "", reminder=True)
            reminded += 1
    return expired, reminded
