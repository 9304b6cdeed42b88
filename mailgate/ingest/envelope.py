"""What an adapter hands to the one door (``ingest.accept``) and what it gets back.

Plain values, apart from ``accept`` itself so that a listener can take a message
before the store is open: ``mailgate serve`` greets on its SMTP/LMTP ports while
SQLAlchemy is still being imported (``daemon.boot``), and a session that reaches DATA
by then queues its ``Incoming`` for the group committer, which stores it once the
database is open.  Nothing here imports more than the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the transport said: SMTP MAIL FROM ("" for the null sender) and RCPT TO."""

    mail_from: str | None
    rcpt_to: tuple[str, ...]
    peer: str | None = None


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message offered to ``accept``; ``source_ref`` makes a re-offer a no-op."""

    raw: bytes
    envelope: Envelope
    source: str
    source_ref: str | None = None
    acknowledge: bool = True
    scan: dict[str, Any] | None = None  # rspamd's answer during the session (ingest.scan)


@dataclass(frozen=True, slots=True)
class Accepted:
    inbound_id: int
    duplicate: bool  # the same source_ref was stored before; nothing new was written
