"""Requests from the hosting panel: the ticket work behind the API's POST and PATCH.

The panel is a second door beside mail, and what comes through it follows the rules of
mail: a request is opened like a mailed one (``tickets.opening``: numbered, timed,
acknowledged to the requester, announced to the queue's operators), an operator's
answer is relayed like one by mail (``operators.answer``), and a change of status,
priority, queue or assignee is checked and applied as the e-mail commands are
(``commands.check``, ``operators.carry_out``).  What differs is trust: the panel has
already logged the customer in, so its request is *authorized*, with the API token's
name as the reason.

Every function checks all its input before it writes anything and raises ``Invalid``
listing every problem; it writes in the caller's transaction and never commits.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.replies import notes
from mailgate.store.models import Account, Article, Operator, Ticket
from mailgate.tickets import commands, opening, operators
from mailgate.tickets.commands import Command
from mailgate.tickets.context import TicketContext

# API field → the e-mail command that changes the same thing.
CHANGES = {"status": "status", "priority": "priority", "queue": "queue", "assignee": "assign"}


class Invalid(Exception):
    """Input that cannot be carried out: (field, problem) pairs, all of them."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {p}" for f, p in problems))
        self.problems = problems


def open_request(
    session: Session,
    rt: TicketContext,
    *,
    login: str,
    sender: str,
    subject: str,
    body: str,
    queue: str | None,
    priority: str | None,
    token: str,
) -> Ticket:
    """Open an authorized ticket for ``sender``, an address of account ``login``."""
    problems: list[tuple[str, str]] = []
    account = session.scalar(select(Account).where(Account.login == login))
    sender = sender.strip().lower()
    if account is None:
        problems.append(("account", f"no account {login!r}"))
    elif sender not in {a.address for a in account.addresses}:
        problems.append(("from", f"not an address of account {login!r}"))
    queue = queue or default_queue(rt)
    if queue not in rt.settings.queue_names:
        problems.append(("queue", f"no queue {queue!r}"))
    if priority is not None and priority not in commands.PRIORITIES:
        problems.append(("priority", f"must be one of {', '.join(commands.PRIORITIES)}"))
    if problems:
        raise Invalid(problems)
    assert account is not None
    now = rt.clock()
    new = opening.NewTicket(
        subject=subject,
        queue=queue,
        priority=priority or "normal",
        priority_reason=f"api:{token}" if priority else None,
        authorization="authorized",
        requester=sender,
        requester_name=account.name,
        helpdesk_address=helpdesk_address(rt, queue),
        account_id=account.id,
        languages=(account.language,),
    )
    ticket = opening.open_ticket(session, rt, new, now)
    article = _written(session, ticket, sender, body, internal=False)
    notes.event(
        session,
        now,
        "authorization",
        "api-token",
        ticket_id=ticket.id,
        address=sender,
        detail=f"opened from the panel with API token {token!r}",
    )
    opening.acknowledge(session, rt, ticket, sender)
    operators.notify_queue(session, rt, ticket, article, "new")
    return ticket


def reply(session: Session, rt: TicketContext, ticket: Ticket, author: str, body: str) -> Article:
    """An operator's answer from the panel, mailed to the requester like one by mail."""
    op = _operator(session, author, body)
    return operators.answer(
        session, rt, ticket, body.strip(), op, inbound_id=None, dedup_key=None, body_text=body
    )


def note(session: Session, rt: TicketContext, ticket: Ticket, author: str, body: str) -> Article:
    """An internal note by an operator: on the ticket, mailed to no customer."""
    op = _operator(session, author, body)
    ticket.updated_at = rt.clock()
    return _written(session, ticket, op.address, body, internal=True)


def _written(session: Session, ticket: Ticket, author: str, body: str, internal: bool) -> Article:
    """An article written in the panel (plain text: visible and full text are one)."""
    article = Article(
        ticket_id=ticket.id,
        direction="in",
        author=author,
        subject=ticket.subject,
        text=body,
        body_text=body,
        internal=internal,
        created_at=ticket.updated_at,
    )
    session.add(article)
    session.flush()
    return article


def change(
    session: Session, rt: TicketContext, ticket: Ticket, fields: Mapping[str, str], token: str
) -> list[str]:
    """Apply status, priority, queue and assignee changes as the e-mail commands would;
    return the rule hits they leave."""
    queues = rt.settings.queue_names
    names = operators.names(session)
    checked: list[Command] = []
    problems: list[tuple[str, str]] = []
    for field, value in fields.items():
        command, error = commands.check(CHANGES[field], value, queues, names)
        if error:
            problems.append((field, error))
        elif command is not None:
            checked.append(command)
    if problems:
        raise Invalid(problems)
    return operators.carry_out(session, rt, ticket, checked, f"api:{token}", None)


def _operator(session: Session, author: str, body: str) -> Operator:
    problems: list[tuple[str, str]] = []
    op = operators.find(session, author.strip())
    if op is None:
        problems.append(("author", "not a registered operator's address"))
    if not body.strip():
        problems.append(("body", "must not be empty"))
    if problems:
        raise Invalid(problems)
    assert op is not None
    return op


def default_queue(rt: TicketContext) -> str:
    """The queue of the first helpdesk address: where a request without one goes."""
    return next(iter(rt.settings.helpdesk.queues.values()))


def helpdesk_address(rt: TicketContext, queue: str) -> str:
    """The address mail about a ticket of ``queue`` comes from (its first one)."""
    return next(a for a, q in rt.settings.helpdesk.queues.items() if q == queue)
