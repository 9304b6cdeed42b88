"""Operators who work from their own mail client.

Operators are registered (``mailgate operators add``) in one or more queues.  A new
ticket or a customer's reply is mailed to the queue's operators (``notify_queue``): the
customer's visible text and attachments, and a reply address signed for that operator
(``support+12.o.<tag>@``; ``support+12.n.<tag>@`` for an internal note).  When an
authenticated operator answers through it, ``relay`` stores the answer as a public
article and sends it to the requester from the helpdesk address, threaded under the
customer's last message; ``carry_out`` applies the commands of its leading block.
Everything here takes the caller's session and never commits; mail to operators is
``automatic=False`` (never rate-limited: an operator must not miss a ticket).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.replies import notes, notify, tokens
from mailgate.replies.render import Quoted
from mailgate.store import memo
from mailgate.store.models import Article, Attachment, Blob, Operator, Ticket
from mailgate.store.states import TicketStatus
from mailgate.tickets.commands import Command
from mailgate.tickets.context import TicketContext

MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024  # per notice; larger files stay in mailgate
_ROSTER = "operators"


def add(
    session: Session, address: str, name: str, queues: Sequence[str], now: datetime
) -> Operator:
    """Register an operator, or update the name and queues of one already registered."""
    address = address.strip().lower()
    row = find(session, address)
    if row is None:
        row = Operator(address=address, name=name, queues=list(queues), created_at=now)
        session.add(row)
    else:
        row.name = name or row.name
        row.queues = list(dict.fromkeys([*row.queues, *queues]))
    session.flush()
    memo.forget(session, _ROSTER)
    return row


def find(session: Session, address: str | None) -> Operator | None:
    if not address:
        return None
    return _roster(session).get(address.lower())


def listing(session: Session) -> list[Operator]:
    return list(_roster(session).values())


def _roster(session: Session) -> dict[str, Operator]:
    """Every operator by address, read once per session: the pipeline asks for each
    message of a batch, and the table is small."""

    def load() -> dict[str, Operator]:
        rows = session.scalars(select(Operator).order_by(Operator.address))
        return {row.address: row for row in rows}

    return memo.remember(session, _ROSTER, load)


def of_queue(session: Session, queue: str) -> list[Operator]:
    return [o for o in listing(session) if queue in o.queues]


def names(session: Session) -> dict[str, str]:
    """What ``#assign`` accepts: lower-cased address, name or local part → address."""
    found: dict[str, str] = {}
    for o in listing(session):
        found.setdefault(o.address.partition("@")[0], o.address)
        if o.name:
            found[o.name.lower()] = o.address
        found[o.address] = o.address
    return found


def notify_queue(
    session: Session,
    rt: TicketContext,
    ticket: Ticket,
    article: Article,
    event: str,
    *,
    mentions: Sequence[int] = (),
    inbound_id: int | None = None,
    kb: Sequence[tuple[str, str]] = (),
    abusive: bool = False,
) -> int:
    """Mail the ticket's operators about a customer's article; return how many.

    ``kb`` lists the knowledge-base articles the acknowledgement offered (title, url);
    ``abusive`` says the customer's text was flagged (rule hit ``abusive``).
    """
    recipients = {o.address: o for o in of_queue(session, ticket.queue)}
    assignee = find(session, ticket.assignee)
    if assignee is not None:
        recipients.setdefault(assignee.address, assignee)
    if not recipients:
        return 0  # no one to tell: skip loading the attachments for nothing
    linked = session.get(Ticket, ticket.linked_ticket_id) if ticket.linked_ticket_id else None
    files = _attachments(session, article)
    for operator in recipients.values():
        mail_operator(
            session,
            rt,
            ticket,
            "operator_notice",
            operator.address,
            quoted=Quoted(
                after=article.text or article.body_text, subject=ticket.subject, attachments=files
            ),
            context={
                "event": event,
                "requester": ticket.requester,
                "queue": ticket.queue,
                "priority": ticket.priority,
                "priority_reason": ticket.priority_reason or "",
                "authorization": ticket.authorization,
                "mentions": list(mentions),
                "linked": linked.number if linked else None,
                "note_address": _note_address(session, rt, ticket, operator.address),
                "kb": kb_links(kb),
                "abusive": abusive,
            },
            inbound_id=inbound_id,
        )
    return len(recipients)


def kb_links(kb: Sequence[tuple[str, str]]) -> list[dict[str, Markup]]:
    """Knowledge-base articles for a template.  They come from the configuration, and
    the mail is plain text: no HTML escaping (an ``&`` in a URL stays one)."""
    return [
        {"title": Markup(title), "url": Markup(url)}  # noqa: S704 -- the admin's, in plain text
        for title, url in kb
    ]


def _note_address(session: Session, rt: TicketContext, ticket: Ticket, to: str) -> str:
    key = rt.threading_key(session)
    return tokens.reply_address(key, ticket.helpdesk_address, ticket.number, "n", to)


def _attachments(session: Session, article: Article) -> tuple[tuple[str, str, bytes], ...]:
    files: list[tuple[str, str, bytes]] = []
    total = 0
    for att in session.scalars(select(Attachment).where(Attachment.article_id == article.id)):
        total += att.size
        if total > MAX_ATTACHMENT_BYTES:
            break
        data = session.scalar(select(Blob.data).where(Blob.sha256 == att.sha256))
        if data is not None:
            files.append((att.filename, att.content_type, bytes(data)))
    return tuple(files)


def relay(
    session: Session,
    rt: TicketContext,
    ticket: Ticket,
    text: str,
    operator: Operator,
    *,
    inbound_id: int | None,
    dedup_key: str | None,
    body_text: str,
) -> Article:
    """Send an operator's answer to the requester and keep it as a public article.

    It goes out from the helpdesk address (the operator's own address stays private),
    as a reply to the customer's latest message so it threads in their mail client,
    with a reply address signed for the requester.
    """
    last = session.scalar(
        select(Article.message_id)
        .where(
            Article.ticket_id == ticket.id,
            Article.direction == "in",
            Article.internal.is_(False),
            Article.message_id.is_not(None),
        )
        .order_by(Article.id.desc())
        .limit(1)
    )
    rendered = notify.send(
        session,
        rt,
        ticket,
        kind="reply",
        to=ticket.requester,
        language=ticket.language,
        in_reply_to=last,
        article=False,
        automatic=False,
        auto_submitted=None,  # a person wrote it
        quoted=Quoted(before=text, subject=ticket.subject),
        context={"operator_name": operator.name},
        inbound_id=inbound_id,
    )
    article = Article(
        ticket_id=ticket.id,
        inbound_id=inbound_id,
        direction="out",
        author=operator.address,
        subject=rendered.subject,
        text=text,
        body_text=body_text,
        internal=False,
        message_id=rendered.message_id,
        dedup_key=dedup_key,
        created_at=rt.clock(),
    )
    session.add(article)
    return article


def answer(
    session: Session,
    rt: TicketContext,
    ticket: Ticket,
    text: str,
    operator: Operator,
    *,
    inbound_id: int | None,
    dedup_key: str | None,
    body_text: str,
) -> Article:
    """An operator's public answer, by mail or from the panel: relayed to the requester,
    the first-response clock stopped, a new ticket opened."""
    now = rt.clock()
    article = relay(
        session,
        rt,
        ticket,
        text,
        operator,
        inbound_id=inbound_id,
        dedup_key=dedup_key,
        body_text=body_text,
    )
    ticket.first_response_at = ticket.first_response_at or now
    if ticket.status == TicketStatus.NEW:
        ticket.status = TicketStatus.OPEN
    ticket.updated_at = now
    return article


def carry_out(
    session: Session,
    rt: TicketContext,
    ticket: Ticket,
    commands: Sequence[Command],
    actor: str,
    inbound_id: int | None,
) -> list[str]:
    """Apply valid commands in order; return the rule hits they leave.

    ``actor`` is who gave them: an operator's address, or ``api:<token name>``.
    """
    now = rt.clock()
    hits: list[str] = []
    for command in commands:
        match command.name:
            case "status":
                set_status(ticket, command.value, now)
            case "priority":
                ticket.priority = command.value
                ticket.priority_reason = f"operator:{actor}"
            case "assign":
                ticket.assignee = command.value
            case "queue":
                ticket.queue = command.value
            case "eta":
                assert command.duration is not None
                ticket.eta_at = now + command.duration
                ticket.eta_reason = command.reason
                _holding_reply(session, rt, ticket, inbound_id)
            case "note":
                continue
        hits.append(f"command:{command.name}" + (f":{command.value}" if command.value else ""))
        notes.event(
            session,
            now,
            "command",
            command.name,
            ticket_id=ticket.id,
            inbound_id=inbound_id,
            address=actor,
            detail=command.shown,
        )
    ticket.updated_at = now
    return hits


def set_status(ticket: Ticket, status: str, now: datetime) -> None:
    if status == TicketStatus.RESOLVED and ticket.status != TicketStatus.RESOLVED:
        ticket.resolved_at = now
    if status == TicketStatus.CLOSED:
        ticket.closed_at = now
        ticket.resolved_at = ticket.resolved_at or now
    if status in (TicketStatus.OPEN, TicketStatus.PENDING):
        ticket.resolved_at = ticket.closed_at = None
    ticket.status = status


def _holding_reply(
    session: Session, rt: TicketContext, ticket: Ticket, inbound_id: int | None
) -> None:
    """Tell the requester when to expect an answer, and why it takes that long."""
    assert ticket.eta_at is not None
    notify.send(
        session,
        rt,
        ticket,
        kind="holding",
        to=ticket.requester,
        language=ticket.language,
        automatic=False,  # an operator asked for it
        quoted=Quoted(after=ticket.eta_reason or ""),
        context={"eta": ticket.eta_at.strftime("%Y-%m-%d %H:%M UTC")},
        inbound_id=inbound_id,
    )


def reject(
    session: Session,
    rt: TicketContext,
    ticket: Ticket,
    operator: Operator,
    errors: Sequence[str],
    inbound_id: int,
) -> None:
    """The short error mail for an operator whose commands could not all be applied."""
    mail_operator(
        session,
        rt,
        ticket,
        "command_error",
        operator.address,
        quoted=Quoted(after="\n".join(f"  {e}" for e in errors)),
        inbound_id=inbound_id,
        auto_submitted="auto-replied",
    )


def tell_kept_internal(
    session: Session,
    rt: TicketContext,
    ticket: Ticket,
    operator: Operator,
    reasons: Sequence[str],
    *,
    in_reply_to: str | None,
    references: tuple[str, ...],
    inbound_id: int,
) -> None:
    """Answer an operator whose mail stayed an internal note: it was not sent, why, and
    what makes a reply go out.  Only to her registered address, never the customer.

    Rate-limited like automatic mail: an unauthenticated "operator" mail may be forged,
    and forged mail must not turn into a stream of mail to the real operator.
    """
    notify.send(
        session,
        rt,
        ticket,
        kind="kept_internal",
        to=operator.address,
        language=rt.settings.helpdesk.default_language,
        in_reply_to=in_reply_to,
        references=references,
        role="o",
        article=False,
        automatic=True,
        context={"reasons": list(reasons)},
        inbound_id=inbound_id,
    )


def mail_operator(
    session: Session,
    rt: TicketContext,
    ticket: Ticket,
    kind: str,
    to: str,
    *,
    quoted: Quoted,
    context: dict[str, Any] | None = None,
    inbound_id: int | None = None,
    auto_submitted: str = "auto-generated",
) -> None:
    """Mail an operator about a ticket: in the helpdesk's language, with a reply address
    signed for operator replies, never rate-limited, not recorded as an article."""
    notify.send(
        session,
        rt,
        ticket,
        kind=kind,
        to=to,
        language=rt.settings.helpdesk.default_language,
        role="o",
        article=False,
        automatic=False,
        auto_submitted=auto_submitted,
        quoted=quoted,
        context=context,
        inbound_id=inbound_id,
    )
