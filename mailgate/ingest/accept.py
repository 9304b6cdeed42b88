"""The one door every ingest path goes through: store the raw bytes durably, then answer.

``accept`` writes the message and its envelope in one transaction and returns only
after the commit (SQLite ``synchronous=FULL`` / PostgreSQL ``synchronous_commit=on``
make that commit durable).  The adapters — SMTP/LMTP, the pipe, batch import, IMAP —
answer 250 / exit 0 / flag the IMAP message only after it returns, and map its
``TemporaryError`` to 451 / exit 75 / "leave unflagged".  No parsing happens here: the
SMTP session never waits on anything but one INSERT.  The values it takes and gives
(``Envelope``, ``Incoming``, ``Accepted``) live in ``ingest.envelope``, which the
listeners import without SQLAlchemy.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mailgate.clock import Clock, utcnow
from mailgate.errors import PermanentError
from mailgate.ingest.envelope import Accepted, Envelope, Incoming
from mailgate.store.db import translate_db_errors
from mailgate.store.models import InboundMessage

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)

__all__ = ["Accepted", "Envelope", "Incoming", "accept", "accept_many", "sniff_message_id"]


def accept(
    sessions: sessionmaker[Session],
    raw: bytes,
    envelope: Envelope,
    source: str,
    *,
    source_ref: str | None = None,
    acknowledge: bool = True,
    scan: dict[str, Any] | None = None,
    clock: Clock = utcnow,
) -> Accepted:
    """Store one message durably; raise ``TemporaryError`` when the database is away."""
    return accept_many(
        sessions, [Incoming(raw, envelope, source, source_ref, acknowledge, scan)], clock=clock
    )[0]


def accept_many(
    sessions: sessionmaker[Session], items: Iterable[Incoming], *, clock: Clock = utcnow
) -> list[Accepted]:
    """Store several messages in one transaction (batch import, group commit)."""
    batch = list(items)
    for item in batch:
        if not item.raw:
            raise PermanentError("empty-message", "no bytes were received")
    with translate_db_errors():
        try:
            return _store(sessions, batch, clock)
        except IntegrityError:
            # Another process stored the same source_ref between our check and our
            # insert; the second pass finds it and reports a duplicate.
            return _store(sessions, batch, clock)


def _store(sessions: sessionmaker[Session], batch: list[Incoming], clock: Clock) -> list[Accepted]:
    now = clock()
    with sessions.begin() as session:
        refs = [i.source_ref for i in batch if i.source_ref]
        known: dict[str, int] = {}
        if refs:
            rows = session.execute(
                select(InboundMessage.source_ref, InboundMessage.id).where(
                    InboundMessage.source_ref.in_(refs)
                )
            )
            known = {ref: id_ for ref, id_ in rows if ref is not None}
        stored: dict[str, InboundMessage] = {}  # repeats inside this batch
        entries: list[tuple[int | InboundMessage, bool]] = []
        for item in batch:
            ref = item.source_ref
            if ref and ref in known:
                entries.append((known[ref], True))
            elif ref and ref in stored:
                entries.append((stored[ref], True))
            else:
                row = _row(item, now)
                session.add(row)
                if ref:
                    stored[ref] = row
                entries.append((row, False))
        session.flush()
        results = [
            Accepted(e if isinstance(e, int) else e.id, duplicate) for e, duplicate in entries
        ]
    return results


def _row(item: Incoming, now: datetime) -> InboundMessage:
    return InboundMessage(
        received_at=now,
        source=item.source,
        source_ref=item.source_ref,
        peer=item.envelope.peer,
        mail_from=item.envelope.mail_from,
        rcpt_to=list(item.envelope.rcpt_to),
        raw=item.raw,
        size=len(item.raw),
        sha256=hashlib.sha256(item.raw).hexdigest(),
        message_id=sniff_message_id(item.raw),
        status="received",
        attempts=0,
        next_attempt_at=now,
        rule_hits=[],
        acknowledge=item.acknowledge,
        scan=item.scan,
    )


def sniff_message_id(raw: bytes) -> str | None:
    """The Message-ID from the header section, without a full parse (for indexing)."""
    end = _HEADER_END.search(raw)
    head = raw[: end.start()] if end else raw[:102_400]
    match = _MESSAGE_ID.search(head)
    if not match:
        return None
    value = re.sub(rb"\s+", b"", match.group(1)).strip(b"<>")
    text = value.decode("ascii", "replace")
    return text[:998] or None
