"""Mail about a ticket: render it, sign its threading tokens, queue it, record it.

Every mail mailgate sends about a ticket (acknowledgement, confirmation request,
operator notice, relayed operator reply …) goes through ``send``: rendered from a
template with a signed Message-ID and a signed reply address for its recipient
(``mailgate.replies.tokens``), queued in the outbox in the caller's transaction (which applies
the limits to automatic mail and picks a VERP or null envelope sender), and, unless
the caller records it itself, kept as an outbound article so the conversation shows
what the customer was told — or that it was held, and why.  Callers pass the article
text so secrets that a mail carries (confirmation tokens) are never stored in an
article.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from mailgate.replies import outbox, tokens
from mailgate.replies.context import QueueContext
from mailgate.replies.render import Quoted, Rendered
from mailgate.store.models import Article, Ticket


def send(
    session: Session,
    rt: QueueContext,
    ticket: Ticket,
    *,
    kind: str,
    to: str,
    language: str | None,
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
    reply_to: str | None = None,
    role: tokens.Role = "c",
    internal: bool = False,
    record: str | None = None,
    article: bool = True,
    automatic: bool = True,
    auto_submitted: str | None = "auto-replied",
    quoted: Quoted | None = None,
    context: dict[str, Any] | None = None,
    inbound_id: int | None = None,
) -> Rendered:
    """Queue one mail; ``record`` replaces the body in the stored article.

    The reply address is signed for ``role`` (customer, operator reply, operator note)
    unless ``reply_to`` names another (a confirmation address).  ``automatic=False``
    is for mail to operators and mail a person wrote: never rate-limited.
    ``article=False`` leaves recording to the caller.  ``inbound_id`` links the mail
    to the message that caused it (trace id, and the receipt-to-ack metric).
    """
    key = rt.threading_key(session)
    domain = ticket.helpdesk_address.rpartition("@")[2]
    rendered = rt.renderer.render(
        kind,
        language,
        from_address=ticket.helpdesk_address,
        to=to,
        in_reply_to=in_reply_to,
        references=references,
        clock=rt.clock,
        auto_submitted=auto_submitted,
        reply_to=reply_to
        or tokens.reply_address(key, ticket.helpdesk_address, ticket.number, role, to),
        message_id=tokens.message_id(key, ticket.number, to, domain),
        quoted=quoted,
        number=ticket.number,
        tag=rt.renderer.subject_tag(ticket.number),
        **(context or {}),
    )
    # The envelope sender is VERP or null (RFC 3834 §3.3), never a helpdesk address:
    # bounces of our mail come back as bounces, never as new tickets.
    queued = outbox.enqueue(
        session,
        rt,
        kind=kind,
        ticket_id=ticket.id,
        rcpt_to=[to],
        rendered=rendered,
        automatic=automatic,
        inbound_id=inbound_id,
    )
    if not article:
        return rendered
    text = rendered.body if record is None else record
    if queued.status == "suppressed":
        # Held by a limit or a suppression: the operator sees what was not sent, and why.
        text = f"({kind} to {to} not sent: {queued.reason})"
    session.add(
        Article(
            ticket_id=ticket.id,
            direction="out",
            author=ticket.helpdesk_address,
            subject=rendered.subject,
            text=text,
            body_text=text,
            internal=internal or queued.status == "suppressed",
            message_id=rendered.message_id,
            created_at=rt.clock(),
        )
    )
    return rendered
