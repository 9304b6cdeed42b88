"""Decisions: what to do with one inbound message, as a typed ``Verdict``.

``decide`` is pure: it reads the ``Facts`` that ``pipeline.gather`` looked up (parse
result, classification, threading, duplicate check, operator, directory) and returns
one verdict (the values are in ``tickets.verdicts``; ``tickets.apply`` carries them
out) plus the names of the rules that hit, which are stored with the message so every
outcome can be explained later (``mailgate ticket show``, ``quarantine show``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mailgate.parse.message import Classification, ParsedMessage
from mailgate.pipeline.priority import NORMAL, Assessment
from mailgate.store.states import TicketStatus
from mailgate.tickets.commands import Block
from mailgate.tickets.correlate import Threading
from mailgate.tickets.verdicts import (
    AnswerChallenge,
    AppendToTicket,
    Discard,
    Duplicate,
    OpenTicket,
    OperatorReply,
    Quarantine,
    RejectCommands,
    Verdict,
)
from mailgate.verify.authn import AuthVerdict
from mailgate.verify.directory import Resolution


@dataclass(frozen=True, slots=True)
class Thread:
    """The state of the ticket the message threads into (for reopening)."""

    status: str
    resolved_at: datetime | None
    reopen_before: datetime  # resolved before this: too old to reopen


@dataclass(frozen=True, slots=True)
class Facts:
    parsed: ParsedMessage
    classification: Classification
    sender: str | None  # the strict From address; ``auth`` says whether to believe it
    threading: Threading
    duplicate_of: int | None  # article id of an earlier delivery of the same message
    queue: str
    acknowledge_allowed: bool  # False for historical batch imports
    own_addresses: frozenset[str]
    auth: AuthVerdict
    resolution: Resolution
    challenge_token: str | None = None  # a confirm address among the recipients
    challenge_answer: str | None = None  # "confirm" | "refuse" read from the reply
    priority: Assessment = NORMAL
    operator: bool = False  # the From address is a registered operator's
    commands: Block | None = None  # an operator's leading command block
    thread: Thread | None = None  # the matched ticket's state


def decide(f: Facts) -> Verdict:
    kind = f.classification.kind
    hits = [f"kind:{kind}", *(f"class:{r}" for r in f.classification.reasons)]
    hits.append(f"auth:{f.auth.result}")
    match = f.threading.match
    if match:
        hits.append(f"thread:{match.how}:{match.number}")
    hits.extend(f"mentions:{n}" for n in f.threading.mentioned)

    if f.duplicate_of is not None:
        return Duplicate(f.duplicate_of, (*hits, "duplicate-delivery"))
    if kind in ("bounce", "report", "autoreply"):
        # RFC 3834: never answer, never reopen; keep it on the ticket it belongs to.
        if match:
            return AppendToTicket(match.ticket_id, internal=True, hits=(*hits, "auto-note"))
        return Discard(f"{kind}-unthreaded", (*hits, f"{kind}-unthreaded"))
    if f.sender is None:
        defects = [d for d in f.parsed.defects if d.startswith("from:")]
        return Quarantine("no-sender-identity", (*hits, *defects, "no-sender-identity"))
    if f.auth.result == "fail":
        # The From domain disowns unauthenticated mail (DMARC p=reject/quarantine).
        return Quarantine("dmarc-fail", (*hits, *f.auth.reasons, "dmarc-fail"))
    if f.sender.lower() in f.own_addresses:
        return Discard("own-mail-returned", (*hits, "own-mail-returned"))
    if f.challenge_token is not None:
        if f.challenge_answer is None:
            return Discard("challenge-reply-unclear", (*hits, "challenge-reply-unclear"))
        return AnswerChallenge(
            f.challenge_token, f.challenge_answer, (*hits, f"challenge:{f.challenge_answer}")
        )
    if match:
        return _continue(f, hits)
    return _open(f, hits)


def _continue(f: Facts, hits: list[str]) -> Verdict:
    """A human mail that threads into an existing ticket: who may do what with it."""
    match = f.threading.match
    assert match is not None
    authenticated = f.auth.result == "pass"
    if match.by_operator_token:
        if not (f.operator and authenticated):
            # THREATS.md: relay (and commands) need an authenticated operator AND the
            # token; anything less stays with the operators as an internal note.
            why = "not-an-operator" if not f.operator else "unauthenticated"
            return AppendToTicket(match.ticket_id, True, (*hits, f"operator-token:{why}"))
        block = f.commands or Block((), (), f.parsed.text)
        if block.errors:
            return RejectCommands(match.ticket_id, block.errors, (*hits, "commands:invalid"))
        note = match.how == "note-token" or block.note
        return OperatorReply(
            match.ticket_id,
            note,
            block.commands,
            block.text,
            (*hits, "operator-note" if note else "operator-reply"),
        )
    if not match.verified:
        return AppendToTicket(match.ticket_id, True, (*hits, "held-for-operators"))
    if f.operator:
        # An operator's mail without the operator token is never relayed.
        return AppendToTicket(match.ticket_id, True, (*hits, "operator-without-token"))
    thread = f.thread
    if thread is not None and thread.status in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
        resolved = thread.resolved_at
        if resolved is not None and resolved < thread.reopen_before:
            hits.append(f"reopen-expired:{match.number}")
            return _open(f, hits, links=match.ticket_id)
        return AppendToTicket(match.ticket_id, False, (*hits, "append", "reopen"), reopen=True)
    return AppendToTicket(match.ticket_id, internal=False, hits=(*hits, "append"))


def _open(f: Facts, hits: list[str], links: int | None = None) -> OpenTicket:
    """A new ticket: how far it is authorized, and whether the admin must confirm."""
    kind = f.classification.kind
    account = f.resolution.match
    hits.extend(f.resolution.notes)
    challenge = False
    if account is None:
        authorization = "consultative"
        hits.append("consultative:no-account")
    else:
        hits.extend(f"account:{how}" for how in account.how)
        if account.registered_sender and f.auth.result == "pass":
            authorization = "authorized"
            hits.append("authorized:registered-and-authenticated")
        elif account.admin_address is None:
            authorization = "consultative"
            hits.append("consultative:account-without-admin-address")
        else:
            authorization = "awaiting_confirmation"
            challenge = kind == "human"
            reason = "registered-unauthenticated" if account.registered_sender else "names-account"
            hits.append(f"challenge:{reason}")
    acknowledge = kind == "human" and f.acknowledge_allowed
    if kind == "human" and not f.acknowledge_allowed:
        hits.append("no-ack:historical-import")
        challenge = False
    elif kind != "human":
        hits.append(f"no-ack:{kind}")
    if f.priority.reason:
        hits.append(f"priority:{f.priority.reason}")
    return OpenTicket(
        f.queue,
        f.priority.priority,
        acknowledge,
        authorization,
        challenge,
        (*hits, "open"),
        priority_reason=f.priority.reason,
        links=links,
    )
