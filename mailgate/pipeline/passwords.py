"""Password authorization: a pasted account password checked once, and the oracle defence.

With ``[verify] password_authorization`` on, the facts stage hands over the login and
password a mail names together.  ``check`` runs before the batch transaction (a hash
costs tens of milliseconds and must not hold locks): it reads the login's hash — from
the company's database when that returned one, else from mailgate's directory — and
verifies it.  A login that is unknown or has no hash is checked against another stored
hash (or a dummy), so the time spent never tells whether the login exists.  An account
whose password authorization is suspended is checked too, and the result thrown away.

``record`` runs in the transaction, once the decision opened a ticket: a wrong password
is counted per account and per sender (never the password itself); the third failure
for one account within ``WINDOW`` suspends password authorization for that account for
``SUSPENSION`` and tells its admin mailbox once.  Meanwhile even the right password only
leads to the challenge a stranger gets.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailgate.pipeline.context import PipelineContext
from mailgate.replies import notify
from mailgate.store.models import Account, PasswordFailure, Ticket
from mailgate.verify import directory
from mailgate.verify.credentials import Check, Credential, Outcome
from mailgate.verify.passwords import verify, verify_dummy

__all__ = ["Check", "check", "record"]

log = logging.getLogger("mailgate.pipeline")

MAX_FAILURES = 3
WINDOW = timedelta(hours=24)
SUSPENSION = timedelta(hours=24)


def check(
    rt: PipelineContext, credential: Credential, external: Sequence[directory.AccountSpec] = ()
) -> Check:
    """Verify a mail's password against its login's hash (no transaction held)."""
    login = credential.login.lower()
    now = rt.clock()
    with rt.sessions() as session:
        row = session.execute(
            select(Account.password_hash, Account.password_locked_until).where(
                Account.login == login
            )
        ).first()
        stored = next((s.password_hash for s in external if s.login == login), None)
        stored = stored or (row.password_hash if row else None)
        like = None
        if stored is None:
            like = session.scalar(
                select(Account.password_hash).where(Account.password_hash.is_not(None)).limit(1)
            )
    until = row.password_locked_until if row else None
    suspended = until is not None and until > now
    outcome: Outcome
    if stored is None:
        verify_dummy(credential.password, like)
        outcome = "failed"
    else:
        matches = verify(stored, credential.password)
        outcome = "suspended" if suspended else ("verified" if matches else "failed")
    rt.metrics.password_checks.labels(outcome).inc()
    return Check(login, outcome)


def record(
    session: Session,
    rt: PipelineContext,
    result: Check,
    sender: str,
    ticket_id: int | None,
    inbound_id: int,
    now: datetime,
) -> tuple[str, ...]:
    """Count a failure; suspend the account after too many. Returns the rule hits."""
    if result.outcome != "failed":
        return ()
    account = session.scalar(select(Account).where(Account.login == result.login))
    session.add(
        PasswordFailure(
            login=result.login,
            account_id=account.id if account else None,
            sender=sender.lower(),
            inbound_id=inbound_id,
            at=now,
        )
    )
    session.flush()
    since = now - WINDOW
    by_sender = _count(session, PasswordFailure.sender == sender.lower(), since)
    hits = [f"password:sender-failures={by_sender}"]
    if account is None:
        return tuple(hits)
    by_account = _count(session, PasswordFailure.account_id == account.id, since)
    hits.append(f"password:account-failures={by_account}")
    locked = account.password_locked_until
    if by_account >= MAX_FAILURES and (locked is None or locked <= now):
        account.password_locked_until = now + SUSPENSION
        rt.metrics.password_lockouts.inc()
        log.warning("password authorization suspended for account %s", account.login)
        _tell_admin(session, rt, account, ticket_id, by_account, now + SUSPENSION)
        hits.append("password:account-suspended")
    return tuple(hits)


def _count(session: Session, where: object, since: datetime) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(PasswordFailure)
            .where(where, PasswordFailure.at > since)  # type: ignore[arg-type]
        )
        or 0
    )


def _tell_admin(
    session: Session,
    rt: PipelineContext,
    account: Account,
    ticket_id: int | None,
    failures: int,
    until: datetime,
) -> None:
    admin = directory.admin_address(session, account.id)
    ticket = session.get(Ticket, ticket_id) if ticket_id is not None else None
    if admin is None or ticket is None:
        return
    notify.send(
        session,
        rt,
        ticket,
        kind="password_lockout",
        to=admin,
        language=account.language or ticket.language,
        # A reply from the admin lands as an internal note, never as the requester's.
        role="n",
        internal=True,
        auto_submitted="auto-generated",
        record=(
            f"Password authorization for account {account.login} suspended until "
            f"{until:%Y-%m-%d %H:%M} UTC after {failures} wrong passwords; its "
            "administrative address was told."
        ),
        context={
            "login": account.login,
            "failures": failures,
            "hours": int(WINDOW.total_seconds() // 3600),
            "until": f"{until:%Y-%m-%d %H:%M} UTC",
        },
    )
