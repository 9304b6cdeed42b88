"""The verdicts: what may be done with one inbound message, as frozen values.

``pipeline.policy.decide`` returns one of them; ``tickets.apply`` carries it out.  They
live here, below both, so the pure decision and the ticket-writing code share one
vocabulary without importing each other.  Each carries the names of the rules that hit
(``hits``), stored with the message so every outcome can be explained later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from mailgate.tickets.commands import Command


@dataclass(frozen=True, slots=True)
class OpenTicket:
    queue: str
    priority: str
    acknowledge: bool
    # authorized | awaiting_confirmation | consultative
    authorization: str
    challenge: bool  # ask the account's admin mailbox to confirm
    hits: tuple[str, ...]
    priority_reason: str | None = None
    links: int | None = None  # id of a ticket resolved too long ago to reopen
    password_used: bool = False  # authorized by the account's password in the mail


@dataclass(frozen=True, slots=True)
class AppendToTicket:
    ticket_id: int
    internal: bool
    hits: tuple[str, ...]
    reopen: bool = False  # a customer's reply to a resolved ticket
    # An operator's mail kept as a note although she may have meant it for the
    # customer: why ("unauthenticated", "no-reply-address").  She is told, never the
    # customer.
    kept_from_operator: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OperatorReply:
    """An authenticated operator answered through a valid operator token."""

    ticket_id: int
    note: bool  # keep it internal (note address or #note) instead of relaying it
    commands: tuple[Command, ...]
    text: str  # the reply without the command block
    hits: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RejectCommands:
    """An operator's commands did not all check out: nothing changes, they are told."""

    ticket_id: int
    errors: tuple[str, ...]
    hits: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AnswerChallenge:
    """The admin mailbox replied to a confirmation request."""

    token: str
    action: str  # confirm | refuse
    hits: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Duplicate:
    article_id: int
    hits: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Discard:
    """Kept in the inbound store with the reason, but no ticket is touched."""

    reason: str
    hits: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Quarantine:
    reason: str
    hits: tuple[str, ...]


Verdict: TypeAlias = (
    OpenTicket
    | AppendToTicket
    | OperatorReply
    | RejectCommands
    | AnswerChallenge
    | Duplicate
    | Discard
    | Quarantine
)
