"""Automatic mail about a ticket: render it, queue it in the outbox, record it.

Every mail mailgate generates on its own (acknowledgement, confirmation request,
confirmation outcome …) goes through ``send``: rendered from a template, queued in the
outbox in the caller's transaction (which applies the limits and picks a VERP or null
envelope sender), and recorded as an outbound article so the conversation shows what
the customer was told — or that it was held, and why.  Callers pass the article text so
secrets that a mail carries (confirmation tokens) are never stored in an article.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from mailgate.replies import outbox
from mailgate.replies.render import Rendered
from mailgate.runtime import Runtime
from mailgate.store.models import Article, Ticket


def send(
    session: Session,
    rt: Runtime,
    ticket: Ticket,
    *,
    kind: str,
    to: str,
    language: str | None,
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
    reply_to: str | None = None,
    internal: bool = False,
    record: str | None = None,
    context: dict[str, Any] | None = None,
    inbound_id: int | None = None,
) -> Rendered:
    """Queue one automatic mail; ``record`` replaces the body in the stored article.

    ``inbound_id`` links the mail to the message that caused it (trace id, and the
    receipt-to-acknowledgement metric).
    """
    rendered = rt.renderer.render(
        kind,
        language,
        from_address=ticket.helpdesk_address,
        to=to,
        in_reply_to=in_reply_to,
        references=references,
        clock=rt.clock,
        reply_to=reply_to,
        number=ticket.number,
        tag=rt.renderer.subject_tag(ticket.number),
        **(context or {}),
    )
    # The envelope sender is VERP or null (RFC 3834 §3.3), never a helpdesk address:
    # bounces of automatic mail come back as bounces, never as new tickets.
    queued = outbox.enqueue(
        session,
        rt,
        kind=kind,
        ticket_id=ticket.id,
        rcpt_to=[to],
        rendered=rendered,
        inbound_id=inbound_id,
    )
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
