"""The quarantine's shared work: which messages it holds, and releasing one as not spam.

Both doors to the quarantine — ``mailgate quarantine`` and the panel API — select the
held messages and release them through here, so they cannot disagree on what
"quarantined", a reason filter or a release means.  A release puts the stored message
back in the processing queue, due now, with ``released_at`` set so that spam verdicts,
the flood limit and quarantining rules no longer hold it; it becomes a ticket like any
other mail.  Writes happen in the caller's transaction, which is never committed here.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from mailgate.parse.headers import header_text, single_line
from mailgate.store.models import InboundMessage
from mailgate.store.states import InboundStatus
from mailgate.tickets.documents import iso

_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_HEAD_MAX = 256 * 1024  # the header block, or this much of it


def held(reason: str = "") -> Select[InboundMessage]:
    """The quarantined messages, oldest first; ``reason``: only reasons starting with it."""
    query = select(InboundMessage).where(InboundMessage.status == InboundStatus.QUARANTINED)
    if reason:
        query = query.where(InboundMessage.reason.startswith(reason, autoescape=True))
    return query.order_by(InboundMessage.id)


def release(session: Session, inbound_id: int, now: datetime) -> tuple[InboundMessage | None, str]:
    """Release one held message for processing as not spam.

    Returns the message (None: no such id) and why it was not released ("" when it
    was): a message not in the quarantine, or one whose bytes retention purged, is left
    as it is.
    """
    m = session.get(InboundMessage, inbound_id, with_for_update=True)
    if m is None or m.status != InboundStatus.QUARANTINED:
        return m, "not in the quarantine"
    if m.purged_at is not None:
        return m, f"purged on {iso(m.purged_at)}, nothing to release"
    m.status, m.attempts, m.next_attempt_at = InboundStatus.RECEIVED, 0, now
    m.released_at = now
    return m, ""


def subject(raw: bytes) -> str:
    """The decoded one-line Subject of stored message bytes ("" when purged or none).

    Only the header block is parsed: a list of held mail must not build MIME trees.
    """
    end = _BLANK_LINE.search(raw, 0, _HEAD_MAX)
    head = raw[: end.start() if end else _HEAD_MAX]
    if not head:
        return ""
    headers = BytesHeaderParser(policy=compat32).parsebytes(head, headersonly=True)
    value = headers.get("subject")
    return single_line(header_text(value, [])) if value is not None else ""
