"""Threading: which existing ticket, if any, an inbound message continues.

Order of evidence, strongest first:

1. a Message-ID of ours (an outbound article: acknowledgement, operator reply) in
   In-Reply-To/References — we chose it at random, so only someone who received our
   mail can know it;
2. a Message-ID of an earlier inbound article of the ticket, or the subject tag
   (``[#123]``) — accepted only when the sender is already a participant of that ticket,
   because both are easy to learn or guess.  The ticket number is never a password.

A tag from a non-participant is reported back as a mention so the new ticket can say it
refers to another one.  The verification issue replaces "sender" (today the strict From)
with the authenticated sender; this module stays the seam.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mailgate.message import ParsedMessage
from mailgate.store.models import Article, Ticket

MAX_REFERENCES = 30


@dataclass(frozen=True, slots=True)
class Match:
    ticket_id: int
    number: int
    how: str  # "our-message-id" | "their-message-id" | "subject-tag"


@dataclass(frozen=True, slots=True)
class Threading:
    match: Match | None
    mentioned: tuple[int, ...] = ()


def tag_pattern(subject_tag: str) -> re.Pattern[str]:
    """A regex finding the configured tag (``[#{number}]``) anywhere in a subject."""
    head, _, tail = subject_tag.partition("{number}")
    return re.compile(re.escape(head) + r"\s*(\d{1,12})\s*" + re.escape(tail))


def find_ticket(
    session: Session, msg: ParsedMessage, sender: str | None, tags: re.Pattern[str]
) -> Threading:
    ids = list(dict.fromkeys([*msg.in_reply_to, *reversed(msg.references)]))[:MAX_REFERENCES]
    if ids:
        rows = session.execute(
            select(Article.message_id, Article.direction, Ticket.id, Ticket.number)
            .join(Ticket, Article.ticket_id == Ticket.id)
            .where(Article.message_id.in_(ids))
        ).all()
        by_id = {mid: (direction, tid, number) for mid, direction, tid, number in rows}
        for mid in ids:
            if mid not in by_id:
                continue
            direction, tid, number = by_id[mid]
            if direction == "out":
                return Threading(Match(tid, number, "our-message-id"))
            if sender and is_participant(session, tid, sender):
                return Threading(Match(tid, number, "their-message-id"))
    numbers = [int(n) for n in tags.findall(msg.subject)]
    mentioned: list[int] = []
    for number in dict.fromkeys(numbers):
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        if ticket is None:
            continue
        if sender and is_participant(session, ticket.id, sender):
            return Threading(Match(ticket.id, number, "subject-tag"))
        mentioned.append(number)
    return Threading(None, tuple(mentioned))


def is_participant(session: Session, ticket_id: int, sender: str) -> bool:
    """The requester, or the author of an inbound article on the ticket."""
    address = sender.lower()
    found = session.scalar(
        select(Ticket.id)
        .outerjoin(Article, (Article.ticket_id == Ticket.id) & (Article.direction == "in"))
        .where(Ticket.id == ticket_id)
        .where(or_(Ticket.requester == address, Article.author == address))
        .limit(1)
    )
    return found is not None
