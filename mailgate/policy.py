"""Decisions: what to do with one inbound message, as a typed ``Verdict``.

``decide`` is pure: it reads ``Facts`` gathered by the pipeline (parse result,
classification, threading, duplicate check) and returns one verdict plus the names of
the rules that hit, which are stored with the message so every outcome can be
explained later (``mailgate ticket show``, ``quarantine show``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailgate.correlate import Threading
from mailgate.message import Classification, ParsedMessage


@dataclass(frozen=True, slots=True)
class Facts:
    parsed: ParsedMessage
    classification: Classification
    sender: str | None  # the strict From address (authenticated sender: later issue)
    threading: Threading
    duplicate_of: int | None  # article id of an earlier delivery of the same message
    queue: str
    acknowledge_allowed: bool  # False for historical batch imports
    own_addresses: frozenset[str]


@dataclass(frozen=True, slots=True)
class OpenTicket:
    queue: str
    priority: str
    acknowledge: bool
    hits: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AppendToTicket:
    ticket_id: int
    internal: bool
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


Verdict = OpenTicket | AppendToTicket | Duplicate | Discard | Quarantine


def decide(f: Facts) -> Verdict:
    kind = f.classification.kind
    hits = [f"kind:{kind}", *(f"class:{r}" for r in f.classification.reasons)]
    match = f.threading.match
    if match:
        hits.append(f"thread:{match.how}:{match.number}")
    hits.extend(f"mentions:{n}" for n in f.threading.mentioned)

    if f.duplicate_of is not None:
        return Duplicate(f.duplicate_of, (*hits, "duplicate-delivery"))
    if kind in ("bounce", "autoreply"):
        # RFC 3834: never answer, never reopen; keep it on the ticket it belongs to.
        if match:
            return AppendToTicket(match.ticket_id, internal=True, hits=(*hits, "auto-note"))
        return Discard(f"{kind}-unthreaded", (*hits, f"{kind}-unthreaded"))
    if f.sender is None:
        defects = [d for d in f.parsed.defects if d.startswith("from:")]
        return Quarantine("no-sender-identity", (*hits, *defects, "no-sender-identity"))
    if f.sender.lower() in f.own_addresses:
        return Discard("own-mail-returned", (*hits, "own-mail-returned"))
    if match:
        return AppendToTicket(match.ticket_id, internal=False, hits=(*hits, "append"))
    acknowledge = kind == "human" and f.acknowledge_allowed
    if kind == "human" and not f.acknowledge_allowed:
        hits.append("no-ack:historical-import")
    elif kind != "human":
        hits.append(f"no-ack:{kind}")
    return OpenTicket(f.queue, "normal", acknowledge, (*hits, "open"))
