"""Threading: which existing ticket, if any, an inbound message continues — and how
far that claim can be believed.

Order of evidence, strongest first (``find_ticket``):

1. a signed reply address among the recipients (``support+12.c.<tag>@``), whose tag
   verifies for the From address: only the person we mailed can know it.  The role in
   it says whether this is a customer's reply (``c``), an operator's reply to relay
   (``o``) or an operator's internal note (``n``); policy still demands an
   authenticated operator for the last two;
2. a signed Message-ID of ours (``t12.<nonce>.<tag>@``) in In-Reply-To/References whose
   tag verifies for the From address — what a reply to the plain helpdesk address
   still carries (Outlook drops Reply-To on "reply all" from some views);
3. an unsigned Message-ID of ours (mail sent before signing existed), a Message-ID of an
   earlier inbound article, or the subject tag (``[#12]`` after any ``Re:``/``AW:``/
   ``Odp:``/``Ответ:``) — each only from an *authenticated* participant, because all of
   them are easy to learn or guess.

A reference from anyone else is ``verified=False``: the pipeline keeps it on that
ticket as an internal note for operators (a colleague's reply-all, a forward), never
in the customer's conversation.  A subject tag from anyone else is reported as a
mention, and the mail opens a new ticket: the ticket number is never a password.

How unauthenticated participants are treated: a participant whose mail does not
authenticate (no aligned DKIM, no trusted Authentication-Results) threads only through
1 or 2 — the tokens are the proof then.  With a subject tag alone they open a new
ticket that mentions the old one, exactly like a stranger, because anyone can write
their address in From.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.parse.message import ParsedMessage
from mailgate.replies import tokens
from mailgate.store.models import Article, Ticket

MAX_REFERENCES = 30


@dataclass(frozen=True, slots=True)
class Match:
    ticket_id: int
    number: int
    # "token" | "operator-token" | "note-token" | "our-message-id" |
    # "their-message-id" | "subject-tag" | "unverified-reference"
    how: str
    verified: bool = True  # False: keep it for operators only

    @property
    def by_operator_token(self) -> bool:
        return self.how in ("operator-token", "note-token")


@dataclass(frozen=True, slots=True)
class Threading:
    match: Match | None
    mentioned: tuple[int, ...] = ()


def tag_pattern(subject_tag: str) -> re.Pattern[str]:
    """A regex finding the configured tag (``[#{number}]``) anywhere in a subject, so
    it is found after any reply prefix (Re:, AW:, Odp.:, Ответ: …) in any language."""
    head, _, tail = subject_tag.partition("{number}")
    return re.compile(re.escape(head) + r"\s*(\d{1,12})\s*" + re.escape(tail))


@dataclass(frozen=True, slots=True)
class Clues:
    """What the message says about threading, beside its parsed headers."""

    sender: str | None  # the strict From address
    authenticated: bool  # AuthVerdict.result == "pass"
    recipients: tuple[str, ...]  # envelope recipients, then To and Cc
    key: bytes  # the threading key


def find_ticket(
    session: Session, msg: ParsedMessage, clues: Clues, tags: re.Pattern[str]
) -> Threading:
    sender = clues.sender
    if sender:
        for address in clues.recipients:
            token = tokens.read_address(clues.key, address, sender)
            if token is None:
                continue
            ticket = _by_number(session, token.number)
            if ticket is not None:
                how = {"c": "token", "o": "operator-token", "n": "note-token"}[token.role]
                return Threading(Match(ticket.id, ticket.number, how))
    ids = list(dict.fromkeys([*msg.in_reply_to, *reversed(msg.references)]))[:MAX_REFERENCES]
    trusted = bool(sender) and clues.authenticated
    if sender:
        for mid in ids:
            number = tokens.read_message_id(clues.key, mid, sender)
            ticket = _by_number(session, number) if number is not None else None
            if ticket is not None:
                return Threading(Match(ticket.id, ticket.number, "our-message-id"))
    unverified: Match | None = None
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
            if trusted and is_participant(session, tid, sender or ""):
                how = "our-message-id" if direction == "out" else "their-message-id"
                return Threading(Match(tid, number, how))
            unverified = unverified or Match(tid, number, "unverified-reference", verified=False)
        # A signed id whose tag did not verify for this sender is still ours: the
        # mail belongs with that ticket, for operators' eyes only.
        for mid in ids:
            if unverified is None and tokens.looks_signed(mid):
                ticket = _by_number(session, int(mid[1:].split(".", 1)[0]))
                if ticket is not None:
                    unverified = Match(
                        ticket.id, ticket.number, "unverified-reference", verified=False
                    )
    mentioned: list[int] = []
    for number in dict.fromkeys(int(n) for n in tags.findall(msg.subject)):
        ticket = _by_number(session, number)
        if ticket is None:
            continue
        if trusted and is_participant(session, ticket.id, sender or ""):
            return Threading(Match(ticket.id, number, "subject-tag"))
        mentioned.append(number)
    return Threading(unverified, tuple(mentioned))


def _by_number(session: Session, number: int) -> Ticket | None:
    return session.scalar(select(Ticket).where(Ticket.number == number))


def is_participant(session: Session, ticket_id: int, sender: str) -> bool:
    """The requester, or the author of a public inbound article of the ticket.

    Internal inbound articles (bounces, a stranger's reply-all kept for operators)
    never make their author a participant, and neither do To/Cc addresses.
    """
    address = sender.lower()
    return address in {p["address"] for p in participants(session, ticket_id)}


def participants(session: Session, ticket_id: int) -> list[dict[str, Any]]:
    """Who takes part in a ticket, with their role: requester, customer, operator."""
    ticket = session.get_one(Ticket, ticket_id)
    found: dict[str, str] = {ticket.requester: "requester"}
    authors = session.execute(
        select(Article.author, Article.direction)
        .where(Article.ticket_id == ticket_id, Article.internal.is_(False))
        .order_by(Article.id)
    ).all()
    for author, direction in authors:
        if direction == "in":
            found.setdefault(author, "customer")
        elif author != ticket.helpdesk_address and "@" in author:
            found.setdefault(author, "operator")  # a relayed operator reply
    if ticket.assignee:
        found.setdefault(ticket.assignee, "operator")
    return [{"address": address, "role": role} for address, role in found.items()]
