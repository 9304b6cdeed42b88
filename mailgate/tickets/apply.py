"""Applying a verdict: the ticket data one inbound message leaves behind.

The pipeline gathers what a message's decision needs (``pipeline.gather``), decides
(``pipeline.policy``) and hands the verdict here with a ``Context``: the inbound row
and what was learnt about the message.  ``apply`` dispatches to one small function per
verdict — open a ticket, append an article, relay an operator's reply, reject commands,
answer a challenge, or leave the tickets alone — and acts on a bounce afterwards.  It
writes in the caller's transaction and never commits; the caller records the verdict,
its rule hits and the inbound status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import assert_never

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mailgate.parse.language import content_language
from mailgate.parse.message import Classification, ParsedMessage
from mailgate.store.models import (
    Article,
    Attachment,
    Blob,
    InboundMessage,
    Operator,
    Ticket,
)
from mailgate.store.states import InboundStatus, TicketStatus
from mailgate.tickets import bounces, challenges, management, opening, operators
from mailgate.tickets.context import TicketContext
from mailgate.tickets.opening import NewTicket
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
from mailgate.verify.directory import AccountMatch


@dataclass(frozen=True, slots=True)
class Context:
    """What applying needs beside the verdict, looked up once before deciding."""

    row: InboundMessage  # the claimed inbound row (without its raw bytes)
    parsed: ParsedMessage
    classification: Classification
    auth: AuthVerdict
    sender: str | None  # the strict From address
    mail_from: str | None  # the envelope sender
    dedup: str | None  # the article's dedup key
    acknowledge: bool  # False for historical batch imports: nobody is mailed
    helpdesk_address: str  # the queue address the message was sent to
    account: AccountMatch | None  # the directory's answer for a new ticket
    mentions: tuple[int, ...]  # ticket numbers named in the subject but not threaded
    operator: Operator | None  # the sender, when a registered operator
    origin: bounces.Origin | None  # our mail a bounce or auto-reply answers
    password_redacted: bool
    missing: tuple[str, ...]  # what a high-priority report lacks (asked in the ack)
    now: datetime
    web_missing: tuple[str, ...] = ()  # what a web fault report lacks (asked in the ack)
    kb: tuple[tuple[str, str], ...] = ()  # (title, url) of knowledge-base articles to offer


def apply(session: Session, rt: TicketContext, verdict: Verdict, ctx: Context) -> list[str]:
    """Carry the verdict out; return its rule hits and those the carrying out added."""
    match verdict:
        case OpenTicket():
            done = _open(session, rt, verdict, ctx)
        case AppendToTicket():
            done = _append(session, rt, verdict, ctx)
        case OperatorReply():
            done = _operator_reply(session, rt, verdict, ctx)
        case RejectCommands():
            done = _reject_commands(session, rt, verdict, ctx)
        case AnswerChallenge():
            done = _answer_challenge(session, rt, verdict, ctx)
        case Duplicate():
            done = _duplicate(session, verdict, ctx)
        case Discard():
            done = ()
        case Quarantine():
            done = _quarantine(verdict, ctx)
        case _:
            assert_never(verdict)
    hits = [*verdict.hits, *done]
    if ctx.classification.kind in ("bounce", "report") and not isinstance(verdict, Duplicate):
        hits.extend(bounces.record(session, rt, ctx.classification.bounce, ctx.origin, ctx.row.id))
    return hits


def _open(
    session: Session, rt: TicketContext, verdict: OpenTicket, ctx: Context
) -> tuple[str, ...]:
    assert ctx.sender is not None
    ticket = _open_ticket(session, rt, verdict, ctx)
    article = _add_article(session, ticket.id, ctx, ctx.sender, internal=False)
    if verdict.challenge and ctx.account is not None:
        challenges.open_challenge(session, rt, ticket, ctx.account, ticket.requester_name)
    if verdict.acknowledge:
        _acknowledge(session, rt, ticket, ctx, verdict.password_used)
    done: tuple[str, ...] = ()
    if ctx.acknowledge:  # never for a batch import of old mail
        abusive = "abusive" in verdict.hits
        operators.notify_queue(
            session,
            rt,
            ticket,
            article,
            "new",
            mentions=ctx.mentions,
            inbound_id=ctx.row.id,
            kb=ctx.kb,
            abusive=abusive,
        )
        if abusive:
            done = management.tell(session, rt, ticket, ctx.row.id)
    ctx.row.ticket_id = ticket.id
    return done


def _append(
    session: Session, rt: TicketContext, verdict: AppendToTicket, ctx: Context
) -> tuple[str, ...]:
    ticket = session.get_one(Ticket, verdict.ticket_id)
    author = ctx.sender or (ctx.mail_from or "")
    article = _add_article(session, ticket.id, ctx, author, verdict.internal)
    done: tuple[str, ...] = ()
    if not verdict.internal:  # a quiet note (bounce, auto-reply) changes nothing
        abusive = "abusive" in verdict.hits
        _customer_replied(session, rt, ticket, article, verdict.reopen, ctx, abusive)
        if abusive and ctx.acknowledge:
            done = management.tell(session, rt, ticket, ctx.row.id)
    ctx.row.ticket_id = ticket.id
    if verdict.kept_from_operator and ctx.operator is not None and ctx.acknowledge:
        # She may believe she answered the customer: say it stayed internal, and why.
        operators.tell_kept_internal(
            session,
            rt,
            ticket,
            ctx.operator,
            verdict.kept_from_operator,
            in_reply_to=ctx.parsed.message_id,
            references=ctx.parsed.references,
            inbound_id=ctx.row.id,
        )
        return (*done, "operator-told:kept-internal")
    return done


def _operator_reply(
    session: Session, rt: TicketContext, verdict: OperatorReply, ctx: Context
) -> tuple[str, ...]:
    ticket = session.get_one(Ticket, verdict.ticket_id)
    op = ctx.operator
    assert op is not None
    _operator_replied(session, rt, ticket, op, verdict, ctx)
    done = operators.carry_out(session, rt, ticket, verdict.commands, op.address, ctx.row.id)
    ctx.row.ticket_id = ticket.id
    return tuple(done)


def _reject_commands(
    session: Session, rt: TicketContext, verdict: RejectCommands, ctx: Context
) -> tuple[str, ...]:
    ticket = session.get_one(Ticket, verdict.ticket_id)
    assert ctx.operator is not None
    operators.reject(session, rt, ticket, ctx.operator, verdict.errors, ctx.row.id)
    ctx.row.ticket_id = ticket.id
    return ()


def _answer_challenge(
    session: Session, rt: TicketContext, verdict: AnswerChallenge, ctx: Context
) -> tuple[str, ...]:
    outcome = challenges.answer(session, rt, verdict.token, verdict.action, sender=ctx.sender)  # type: ignore[arg-type]
    if outcome.ticket_number is not None:
        ticket = session.scalars(select(Ticket).where(Ticket.number == outcome.ticket_number)).one()
        _add_article(session, ticket.id, ctx, ctx.sender or "", internal=True)
        ctx.row.ticket_id = ticket.id
    return (f"challenge-outcome:{outcome.result}",)


def _duplicate(session: Session, verdict: Duplicate, ctx: Context) -> tuple[str, ...]:
    ctx.row.ticket_id = session.scalar(
        select(Article.ticket_id).where(Article.id == verdict.article_id)
    )
    return ()


def _quarantine(verdict: Quarantine, ctx: Context) -> tuple[str, ...]:
    ctx.row.status = InboundStatus.QUARANTINED
    ctx.row.reason = verdict.reason
    return ()


def _open_ticket(session: Session, rt: TicketContext, verdict: OpenTicket, ctx: Context) -> Ticket:
    parsed = ctx.parsed
    account = ctx.account
    new = NewTicket(
        subject=parsed.subject,
        queue=verdict.queue,
        priority=verdict.priority,
        priority_reason=verdict.priority_reason,
        authorization=verdict.authorization,
        requester=ctx.sender or "",
        requester_name=parsed.from_.name if parsed.from_ else "",
        helpdesk_address=ctx.helpdesk_address,
        account_id=account.account_id if account else None,
        languages=(
            account.language if account else None,
            # A follow-up of a ticket too old to reopen speaks that ticket's language:
            # "still broken" says too little to detect one.
            _linked_language(session, verdict.links),
            content_language(parsed.headers),
            parsed.language,
        ),
        links=verdict.links,
    )
    return opening.open_ticket(session, rt, new, ctx.now)


def _linked_language(session: Session, ticket_id: int | None) -> str | None:
    if ticket_id is None:
        return None
    return session.scalar(select(Ticket.language).where(Ticket.id == ticket_id))


def _customer_replied(
    session: Session,
    rt: TicketContext,
    ticket: Ticket,
    article: Article,
    reopen: bool,
    ctx: Context,
    abusive: bool = False,
) -> None:
    """A public reply from the customer: reopen or wake the ticket, tell the operators."""
    now = rt.clock()
    ticket.updated_at = now
    if reopen or ticket.status == TicketStatus.PENDING:
        operators.set_status(ticket, TicketStatus.OPEN, now)
    if ctx.acknowledge:
        event = "reopened" if reopen else "reply"
        operators.notify_queue(
            session, rt, ticket, article, event, inbound_id=ctx.row.id, abusive=abusive
        )


def _operator_replied(
    session: Session,
    rt: TicketContext,
    ticket: Ticket,
    op: Operator,
    verdict: OperatorReply,
    ctx: Context,
) -> None:
    """Relay the operator's answer, or keep it as a note; stop the first-response clock.

    Every operator mail leaves one article (commands alone leave a note listing them),
    so a second delivery of the same mail is recognised as a duplicate and changes
    nothing twice.
    """
    text = verdict.text.strip()
    if text and not verdict.note:
        operators.answer(
            session,
            rt,
            ticket,
            text,
            op,
            inbound_id=ctx.row.id,
            dedup_key=ctx.dedup,
            body_text=ctx.parsed.body_text,
        )
        return
    summary = " ".join(c.shown for c in verdict.commands)
    article = _add_article(session, ticket.id, ctx, op.address, internal=True)
    article.text = text or f"(commands: {summary or 'none'})"


def _add_article(
    session: Session, ticket_id: int, ctx: Context, author: str, internal: bool
) -> Article:
    parsed = ctx.parsed
    article = Article(
        ticket_id=ticket_id,
        inbound_id=ctx.row.id,
        direction="in",
        author=author.lower(),
        subject=parsed.subject,
        text=parsed.text,
        body_text=parsed.body_text,
        html=parsed.html,
        internal=internal,
        message_id=parsed.message_id,
        dedup_key=ctx.dedup,
        auth=ctx.auth.to_json(),
        created_at=ctx.row.received_at,
    )
    session.add(article)
    session.flush()
    for att in parsed.attachments:
        _store_blob(session, att.sha256, att.data)
        session.add(
            Attachment(
                article_id=article.id,
                sha256=att.sha256,
                filename=att.filename,
                content_type=att.content_type,
                size=att.size,
            )
        )
    return article


def _store_blob(session: Session, sha256: str, data: bytes) -> None:
    values = {"sha256": sha256, "size": len(data), "data": data}
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(insert(Blob).values(**values).on_conflict_do_nothing())


def _acknowledge(
    session: Session, rt: TicketContext, ticket: Ticket, ctx: Context, password_used: bool
) -> None:
    assert ctx.sender is not None
    opening.acknowledge(
        session,
        rt,
        ticket,
        ctx.sender,
        in_reply_to=ctx.parsed.message_id,
        references=ctx.parsed.references,
        password_redacted=ctx.password_redacted,
        password_used=password_used,
        missing=ctx.missing,
        web_missing=tuple(ctx.web_missing),
        kb=tuple(operators.kb_links(ctx.kb)),
        inbound_id=ctx.row.id,
        # The one automatic mail past the per-recipient limit: a password to change.
        warning=ctx.password_redacted,
    )
