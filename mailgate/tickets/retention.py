"""Retention and export: how long raw mail is kept, and handing a ticket over as mbox.

``purge`` (a scheduled job, one instance) empties the raw bytes of inbound messages and
the bytes of attachments older than ``retention.days``; tickets, article text,
attachment names and hashes stay, so a conversation still reads whole.  A quarantined
message is kept until someone has dealt with it (replayed, then processed).  An
attachment's bytes go only when no article newer than the cut-off uses them (they are
stored once per content hash).  ``export`` writes a ticket's messages — inbound as
received, outbound as sent — into an mbox file, for the customer or a court.
"""

from __future__ import annotations

import mailbox
from datetime import timedelta
from pathlib import Path

from sqlalchemy import and_, exists, select, update

from mailgate.store.db import translate_db_errors
from mailgate.store.models import Article, Attachment, Blob, InboundMessage, OutboxMessage, Ticket
from mailgate.store.states import InboundStatus, OutboxStatus
from mailgate.tickets.context import TicketContext


def purge(rt: TicketContext) -> tuple[int, int]:
    """Empty what is past retention; return (messages, attachment blobs) purged."""
    days = rt.settings.retention.days
    if days <= 0:
        return 0, 0
    now = rt.clock()
    cutoff = now - timedelta(days=days)
    with translate_db_errors(), rt.sessions.begin() as session:
        messages = session.execute(  # type: ignore[attr-defined]
            update(InboundMessage)
            .where(
                InboundMessage.received_at < cutoff,
                InboundMessage.purged_at.is_(None),
                # Finished with: processed, or dropped from the quarantine.
                InboundMessage.status.in_((InboundStatus.DONE, InboundStatus.DROPPED)),
            )
            .values(raw=b"", purged_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        still_used = exists().where(
            and_(
                Attachment.sha256 == Blob.sha256,
                Attachment.article_id == Article.id,
                Article.created_at >= cutoff,
            )
        )
        blobs = session.execute(  # type: ignore[attr-defined]
            update(Blob)
            .where(Blob.purged_at.is_(None), ~still_used)
            .values(data=b"", purged_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
    return int(messages or 0), int(blobs or 0)


def export(rt: TicketContext, number: int, path: Path) -> int:
    """Write ticket ``number``'s messages to an mbox at ``path``; return how many."""
    with translate_db_errors(), rt.sessions() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        if ticket is None:
            raise LookupError(f"no ticket {number}")
        raws: list[bytes] = []
        for article in ticket.articles:
            if article.direction == "in" and article.inbound_id is not None:
                raw = session.scalar(
                    select(InboundMessage.raw).where(InboundMessage.id == article.inbound_id)
                )
            elif article.direction == "out" and article.message_id:
                raw = session.scalar(
                    select(OutboxMessage.raw).where(
                        OutboxMessage.message_id == article.message_id,
                        OutboxMessage.status == OutboxStatus.SENT,
                    )
                )
            else:
                raw = None
            if raw:  # purged or never sent: nothing to hand over for this article
                raws.append(bytes(raw))
    box = mailbox.mbox(path, create=True)
    try:
        box.lock()
        for raw in raws:
            box.add(raw.replace(b"\r\n", b"\n"))
        box.flush()
    finally:
        box.unlock()
        box.close()
    return len(raws)
