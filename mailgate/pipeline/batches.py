"""Processing of stored messages — the only place an inbound message becomes ticket data.

For each message: **claim** it (short transaction; a lease lets another worker reclaim
it if we die), gather **facts** with no transaction open (parse, classify), then in one
write transaction look up threading and duplicates, **decide** a ``Verdict`` and
**apply** it (ticket, article, attachments, outbox rows, inbound status).  Failures are
caught per message: ``PermanentError`` quarantines at once with its reason; anything
else is retried with exponential backoff and quarantined once ``max_attempts`` is spent.
One bad message never blocks the others, and none is ever deleted.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, defer

from mailgate.daemon.runtime import Runtime
from mailgate.errors import PermanentError
from mailgate.parse.language import choose_language, content_language
from mailgate.parse.message import ParsedMessage
from mailgate.pipeline import policy, priority
from mailgate.pipeline.facts import BudgetExceeded, Evidence, FactsConfig, Job
from mailgate.replies import notify
from mailgate.store.db import translate_db_errors
from mailgate.store.models import (
    Article,
    Attachment,
    Blob,
    Counter,
    InboundMessage,
    Operator,
    Ticket,
)
from mailgate.tickets import bounces, challenges, commands, correlate, operators
from mailgate.verify import directory

# Named after the stage, not the module: admins filter logs on it (docs/deploy.md).
log = logging.getLogger("mailgate.pipeline")

CLAIM_BYTES = 32 * 1024 * 1024  # raw bytes carried per claimed batch
_DIGEST_CHUNK = 1 << 20
_HEADER_END = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    raw: bytes
    mail_from: str | None
    rcpt_to: tuple[str, ...]
    acknowledge: bool
    attempts: int


class Worker:
    """Runs the pipeline over due messages and remembers what it holds.

    When the database goes away mid-batch, the messages this worker claimed stay
    "processing" under its lease.  Rather than let them wait for the lease to run out,
    the worker releases them itself as soon as the database answers again.
    """

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.unsettled: dict[int, int] = {}  # inbound id → attempts at claim time

    def run_pending(self, limit: int = 20) -> int:
        """Claim and process up to ``limit`` due messages; return how many were claimed.

        Raises ``DatabaseUnavailable``; what it had claimed is released on the next call.
        """
        with translate_db_errors():
            if self.unsettled:
                self._release()
            batch = claim(self.rt, limit)
        self.unsettled.update((item.id, item.attempts) for item in batch)
        if batch:
            process_batch(self.rt, batch)
        self.unsettled.clear()
        return len(batch)

    def _release(self) -> None:
        now = self.rt.clock()
        with self.rt.sessions.begin() as session:
            for inbound_id, attempts in self.unsettled.items():
                session.execute(
                    update(InboundMessage)
                    .where(
                        InboundMessage.id == inbound_id,
                        InboundMessage.status == "processing",
                        InboundMessage.attempts == attempts,
                    )
                    # The outage was not the message's fault: give the attempt back.
                    .values(
                        status="retry",
                        attempts=attempts - 1,
                        lease_until=None,
                        next_attempt_at=now,
                    )
                )
        self.unsettled.clear()


def run_pending(rt: Runtime, limit: int = 20) -> int:
    """One batch by a short-lived worker (tests, ``mailgate drain``)."""
    return Worker(rt).run_pending(limit)


def claim(rt: Runtime, limit: int) -> list[Claimed]:
    now = rt.clock()
    lease = timedelta(seconds=rt.settings.processing.lease_seconds)
    with rt.sessions.begin() as session:
        rows = session.scalars(
            select(InboundMessage)
            .where(
                or_(
                    InboundMessage.status.in_(("received", "retry"))
                    & (InboundMessage.next_attempt_at <= now),
                    # A worker that died mid-message: its lease ran out.
                    (InboundMessage.status == "processing") & (InboundMessage.lease_until < now),
                )
            )
            .order_by(InboundMessage.next_attempt_at, InboundMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        claimed: list[Claimed] = []
        carried = 0
        for row in rows:
            if claimed and carried + row.size > CLAIM_BYTES:
                break
            carried += row.size
            row.status = "processing"
            row.lease_until = now + lease
            row.attempts += 1
            claimed.append(
                Claimed(
                    row.id,
                    row.raw,
                    row.mail_from,
                    tuple(row.rcpt_to),
                    row.acknowledge,
                    row.attempts,
                )
            )
    return claimed


def facts_config(rt: Runtime) -> FactsConfig:
    return FactsConfig(
        limits=rt.parse_limits,
        own_addresses=own_addresses(rt),
        own_domains=own_domains(rt),
        trusted_authserv_ids=frozenset(rt.settings.verify.trusted_authserv_ids),
        priority=rt.settings.priority,
    )


def process(rt: Runtime, item: Claimed) -> None:
    """Process one claimed message (a batch of one)."""
    process_batch(rt, [item])


def process_batch(rt: Runtime, batch: list[Claimed]) -> None:
    """Process claimed messages: facts for all first, then one transaction.

    Each message is applied inside its own savepoint, so one that fails rolls back alone
    and has its failure recorded, while the batch shares one commit (one fsync instead
    of one per message).  Never raises for a problem with a message; raises
    ``DatabaseUnavailable`` when the database goes away (the caller still holds the
    claims and releases them).
    """
    outcomes: list[str] = []
    evidence: dict[int, Evidence] = {}
    external: dict[int, tuple[directory.AccountSpec, ...]] = {}
    failed: dict[int, tuple[BaseException, bool]] = {}
    jobs = [Job(item.id, item.raw, item.mail_from) for item in batch]
    found = rt.analyzer.run(jobs, facts_config(rt), rt.dns, rt.clock())
    for item in batch:
        result = found[item.id]
        if isinstance(result, PermanentError):
            failed[item.id] = (result, True)
        elif isinstance(result, BaseException):
            if not isinstance(result, BudgetExceeded):
                log.error(
                    "facts for inbound id=%s failed",
                    item.id,
                    exc_info=result,
                    extra={"trace": item.id},
                )
            failed[item.id] = (result, False)
        else:
            evidence[item.id] = result
            # The customer database is asked here, outside any transaction of ours.
            sender = result.parsed.from_.address if result.parsed.from_ else None
            if rt.external is not None:
                external[item.id] = tuple(rt.external.lookup(sender, result.identifiers))
    with translate_db_errors(), rt.sessions.begin() as session:
        # One query loads every row of the batch into the session, so each message's
        # own look-up (``_inbound_row``) costs no round trip.  Held in a variable: the
        # session's identity map keeps only weak references.
        rows = session.scalars(
            select(InboundMessage)
            .options(defer(InboundMessage.raw))
            .where(InboundMessage.id.in_([item.id for item in batch]))
        ).all()
        for item in batch:
            if item.id in failed:
                outcomes.append(_record_failure(session, rt, item, *failed[item.id]))
                continue
            try:
                with session.begin_nested():
                    outcomes.append(
                        _decide_and_apply(
                            session, rt, item, evidence[item.id], external.get(item.id, ())
                        )
                    )
            except (OperationalError, InterfaceError):
                raise  # the database itself: translated, the batch is released
            except PermanentError as exc:
                outcomes.append(_record_failure(session, rt, item, exc, True))
            except IntegrityError as exc:
                # A concurrent worker stored the same article first; the retry sees
                # it as a duplicate.
                outcomes.append(_record_failure(session, rt, item, exc, False))
            except Exception as exc:  # the per-message boundary: log, retry, never lose
                log.exception("processing inbound id=%s failed", item.id, extra={"trace": item.id})
                outcomes.append(_record_failure(session, rt, item, exc, False))
        del rows  # alive until every message was applied
    for outcome in outcomes:  # counted once the batch is committed
        if outcome:
            rt.metrics.processed.labels(outcome).inc()


def _decide_and_apply(
    session: Session,
    rt: Runtime,
    item: Claimed,
    ev: Evidence,
    external_accounts: tuple[directory.AccountSpec, ...] = (),
) -> str:
    """Decide and apply in the caller's transaction; return the verdict's name ("" when
    another worker took the message over)."""
    row = _inbound_row(session, item.id)
    if row is None or row.status != "processing" or row.attempts != item.attempts:
        return ""  # someone else took it over after our lease ran out
    parsed = ev.parsed
    sender = parsed.from_.address if parsed.from_ else None
    dedup = dedup_key(parsed, item.raw)
    duplicate_of = None
    if dedup is not None:
        duplicate_of = session.scalar(select(Article.id).where(Article.dedup_key == dedup))
    queue, helpdesk_address = route(rt, item.rcpt_to, parsed)
    token = challenges.find_token([*item.rcpt_to, *(a.address for a in (*parsed.to, *parsed.cc))])
    for spec in external_accounts:
        directory.upsert(session, spec, rt.clock())
    now = rt.clock()
    clues = correlate.Clues(
        sender=sender,
        authenticated=ev.auth.result == "pass",
        recipients=(*item.rcpt_to, *(a.address for a in (*parsed.to, *parsed.cc))),
        key=rt.threading_key(session),
    )
    threading = correlate.find_ticket(
        session, parsed, clues, correlate.tag_pattern(rt.settings.helpdesk.subject_tag)
    )
    operator = operators.find(session, sender)
    block = None
    thread = None
    if threading.match is not None:
        matched = session.get_one(Ticket, threading.match.ticket_id)
        reopen_before = now - timedelta(days=rt.settings.threading.reopen_days)
        thread = policy.Thread(matched.status, matched.resolved_at, reopen_before)
        if operator is not None and threading.match.by_operator_token:
            block = commands.read(
                parsed.text,
                queues=rt.settings.queue_names,
                operators=operators.names(session),
            )
    # A bounce or auto-reply to our mail belongs with the mail that caused it (VERP
    # address, or our Message-ID in the returned copy), even without In-Reply-To.
    origin = None
    if ev.classification.kind in ("bounce", "autoreply"):
        origin = bounces.find_origin(session, rt, item.rcpt_to, item.raw, own_domains(rt))
        if threading.match is None and origin is not None:
            threading = origin.threading() or threading
    facts = policy.Facts(
        parsed=parsed,
        classification=ev.classification,
        sender=sender,
        threading=threading,
        duplicate_of=duplicate_of,
        queue=queue,
        acknowledge_allowed=item.acknowledge,
        own_addresses=own_addresses(rt),
        auth=ev.auth,
        resolution=directory.resolve(session, sender, ev.identifiers),
        challenge_token=token,
        challenge_answer=challenges.read_answer(parsed.text) if token else None,
        priority=ev.assessment,
        operator=operator is not None,
        commands=block,
        thread=thread,
    )
    verdict = policy.decide(facts)
    hits = list(verdict.hits)
    match verdict:
        case policy.OpenTicket():
            assert sender is not None
            ticket = _open_ticket(session, rt, verdict, facts, helpdesk_address, now)
            article = _add_article(session, ticket.id, row, ev, sender, dedup, internal=False)
            account = facts.resolution.match
            if verdict.challenge and account is not None:
                challenges.open_challenge(session, rt, ticket, account, ticket.requester_name)
            if verdict.acknowledge:
                _acknowledge(session, rt, ticket, ev, sender, item.id)
            if item.acknowledge:  # never for a batch import of old mail
                operators.notify_queue(
                    session, rt, ticket, article, "new",
                    mentions=facts.threading.mentioned, inbound_id=item.id,
                )  # fmt: skip
            row.ticket_id = ticket.id
        case policy.AppendToTicket():
            ticket = session.get_one(Ticket, verdict.ticket_id)
            author = sender or (item.mail_from or "")
            article = _add_article(session, ticket.id, row, ev, author, dedup, verdict.internal)
            if not verdict.internal:  # a quiet note (bounce, auto-reply) changes nothing
                _customer_replied(session, rt, ticket, article, verdict.reopen, item)
            row.ticket_id = ticket.id
        case policy.OperatorReply():
            ticket = session.get_one(Ticket, verdict.ticket_id)
            op = operators.find(session, sender)
            assert op is not None
            _operator_replied(session, rt, ticket, op, verdict, row, ev, dedup)
            hits.extend(operators.carry_out(session, rt, ticket, verdict.commands, op, item.id))
            row.ticket_id = ticket.id
        case policy.RejectCommands():
            ticket = session.get_one(Ticket, verdict.ticket_id)
            op = operators.find(session, sender)
            assert op is not None
            operators.reject(session, rt, ticket, op, verdict.errors, item.id)
            row.ticket_id = ticket.id
        case policy.AnswerChallenge():
            outcome = challenges.answer(session, rt, verdict.token, verdict.action, sender=sender)  # type: ignore[arg-type]
            hits.append(f"challenge-outcome:{outcome.result}")
            if outcome.ticket_number is not None:
                ticket = session.scalars(
                    select(Ticket).where(Ticket.number == outcome.ticket_number)
                ).one()
                _add_article(session, ticket.id, row, ev, sender or "", dedup, internal=True)
                row.ticket_id = ticket.id
        case policy.Duplicate():
            row.ticket_id = session.scalar(
                select(Article.ticket_id).where(Article.id == verdict.article_id)
            )
        case policy.Discard():
            pass
        case policy.Quarantine():
            row.status = "quarantined"
            row.reason = verdict.reason
    if ev.classification.kind == "bounce" and not isinstance(verdict, policy.Duplicate):
        hits.extend(bounces.record(session, rt, ev.classification.bounce, origin, row.id))
    if row.status != "quarantined":
        row.status = "done"
    row.verdict = type(verdict).__name__
    row.rule_hits = hits
    row.lease_until = None
    row.processed_at = now
    log.info(
        "inbound id=%s verdict=%s ticket=%s hits=%s",
        item.id,
        row.verdict,
        row.ticket_id,
        ",".join(hits),
        extra={"trace": item.id},
    )
    return row.verdict


def _open_ticket(
    session: Session,
    rt: Runtime,
    verdict: policy.OpenTicket,
    facts: policy.Facts,
    helpdesk_address: str,
    now: datetime,
) -> Ticket:
    parsed = facts.parsed
    account = facts.resolution.match
    ticket = Ticket(
        number=allocate_number(session),
        subject=parsed.subject[:2000] or "(no subject)",
        queue=verdict.queue,
        priority=verdict.priority,
        priority_reason=verdict.priority_reason,
        status="new",
        requester=(facts.sender or "").lower(),
        requester_name=parsed.from_.name if parsed.from_ else "",
        language=choose_language(
            account.language if account else None,
            content_language(parsed.headers),
            parsed.language,
            rt.settings.helpdesk.queue_languages.get(verdict.queue),
            rt.settings.helpdesk.default_language,
        ),
        helpdesk_address=helpdesk_address,
        authorization=verdict.authorization,
        account_id=account.account_id if account else None,
        first_response_due=now + rt.settings.first_response_target(verdict.queue, verdict.priority),
        linked_ticket_id=verdict.links,
        created_at=now,
        updated_at=now,
    )
    session.add(ticket)
    session.flush()
    return ticket


def _customer_replied(
    session: Session, rt: Runtime, ticket: Ticket, article: Article, reopen: bool, item: Claimed
) -> None:
    """A public reply from the customer: reopen or wake the ticket, tell the operators."""
    now = rt.clock()
    ticket.updated_at = now
    if reopen or ticket.status == "pending":
        operators.set_status(ticket, "open", now)
    if item.acknowledge:
        event = "reopened" if reopen else "reply"
        operators.notify_queue(session, rt, ticket, article, event, inbound_id=item.id)


def _operator_replied(
    session: Session,
    rt: Runtime,
    ticket: Ticket,
    op: Operator,
    verdict: policy.OperatorReply,
    row: InboundMessage,
    ev: Evidence,
    dedup: str | None,
) -> None:
    """Relay the operator's answer, or keep it as a note; stop the first-response clock.

    Every operator mail leaves one article (commands alone leave a note listing them),
    so a second delivery of the same mail is recognised as a duplicate and changes
    nothing twice.
    """
    now = rt.clock()
    text = verdict.text.strip()
    if text and not verdict.note:
        operators.relay(
            session, rt, ticket, text, op, inbound_id=row.id, dedup_key=dedup, parsed=ev.parsed
        )
        ticket.first_response_at = ticket.first_response_at or now
        if ticket.status == "new":
            ticket.status = "open"
        ticket.updated_at = now
        return
    summary = " ".join(f"#{c.name} {c.value}".strip() for c in verdict.commands)
    article = _add_article(session, ticket.id, row, ev, op.address, dedup, internal=True)
    article.text = text or f"(commands: {summary or 'none'})"


def _add_article(
    session: Session,
    ticket_id: int,
    row: InboundMessage,
    ev: Evidence,
    author: str,
    dedup: str | None,
    internal: bool,
) -> Article:
    parsed = ev.parsed
    article = Article(
        ticket_id=ticket_id,
        inbound_id=row.id,
        direction="in",
        author=author.lower(),
        subject=parsed.subject,
        text=parsed.text,
        body_text=parsed.body_text,
        html=parsed.html,
        internal=internal,
        message_id=parsed.message_id,
        dedup_key=dedup,
        auth=ev.auth.to_json(),
        created_at=row.received_at,
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
    session: Session, rt: Runtime, ticket: Ticket, ev: Evidence, sender: str, inbound_id: int
) -> None:
    notify.send(
        session,
        rt,
        ticket,
        kind="ack",
        to=sender,
        language=ticket.language,
        in_reply_to=ev.parsed.message_id,
        references=ev.parsed.references,
        context={
            "authorization": ticket.authorization,
            "password_redacted": ev.password_redacted,
            # A high-priority report is an incident: ask for exactly what it lacks.
            "missing": list(
                priority.missing_items(ev.parsed.subject, ev.parsed.text, ev.identifiers)
            )
            if ticket.priority == "high"
            else [],
        },
        inbound_id=inbound_id,
    )


def allocate_number(session: Session) -> int:
    """The next ticket number, under the counter row's lock."""
    value = session.scalar(
        update(Counter)
        .where(Counter.name == "ticket")
        .values(value=Counter.value + 1)
        .returning(Counter.value)
    )
    if value is None:
        raise RuntimeError("ticket counter row missing: run `mailgate db upgrade`")
    return int(value)


def route(rt: Runtime, rcpt_to: tuple[str, ...], parsed: ParsedMessage) -> tuple[str, str]:
    """The queue and helpdesk address a message was sent to.

    Envelope recipients decide; a pipe delivery without them falls back to To/Cc.
    """
    candidates = [*rcpt_to, *(a.address for a in (*parsed.to, *parsed.cc))]
    for address in candidates:
        queue = rt.settings.queue_for(address)
        if queue is not None:
            local, _, domain = address.lower().rpartition("@")
            return queue, f"{local.split('+', 1)[0]}@{domain}"
    first, queue = next(iter(rt.settings.helpdesk.queues.items()))
    return queue, first.lower()


def own_addresses(rt: Runtime) -> frozenset[str]:
    return frozenset(a.lower() for a in rt.settings.helpdesk.queues)


def own_domains(rt: Runtime) -> frozenset[str]:
    return frozenset(a.rpartition("@")[2].lower() for a in rt.settings.helpdesk.queues)


def dedup_key(parsed: ParsedMessage, raw: bytes) -> str | None:
    """Message-ID + sender + body digest; None without a Message-ID (never guess)."""
    if not parsed.message_id:
        return None
    end = _HEADER_END.search(raw)
    body_digest = _body_digest(raw, end.end() if end else len(raw))
    sender = parsed.from_.address.lower() if parsed.from_ else ""
    material = f"{parsed.message_id}\n{sender}\n{body_digest}".encode()
    return hashlib.sha256(material).hexdigest()


def _body_digest(raw: bytes, start: int) -> str:
    """SHA-256 of ``raw[start:]`` with CRLF read as LF (line endings differ between
    SMTP and pipe/IMAP copies of the same mail), a megabyte at a time: slicing and
    replacing the whole body would make two copies of a large attachment."""
    digest = hashlib.sha256()
    view = memoryview(raw)
    while start < len(raw):
        end = min(start + _DIGEST_CHUNK, len(raw))
        while end < len(raw) and raw[end - 1] == 0x0D:  # never split a CRLF
            end += 1
        digest.update(view[start:end].tobytes().replace(b"\r\n", b"\n"))
        start = end
    return digest.hexdigest()


def _inbound_row(session: Session, inbound_id: int) -> InboundMessage | None:
    """The inbound row to update, without its raw bytes: the claim already carried
    them, and loading them again cost a copy of every message per attempt."""
    return session.get(InboundMessage, inbound_id, options=[defer(InboundMessage.raw)])


def _record_failure(
    session: Session, rt: Runtime, item: Claimed, exc: BaseException, permanent: bool
) -> str:
    """Record a failed attempt; return "Quarantine" when the message was quarantined."""
    p = rt.settings.processing
    reason = exc.reason if isinstance(exc, PermanentError) else None
    row = _inbound_row(session, item.id)
    if row is None or row.attempts != item.attempts:
        return ""
    row.last_error = f"{type(exc).__name__}: {exc}"[:4000]
    row.lease_until = None
    if permanent or row.attempts >= p.max_attempts:
        row.status = "quarantined"
        exhausted = "parse-budget" if isinstance(exc, BudgetExceeded) else "attempts-exhausted"
        row.reason = reason or exhausted
        row.verdict = "Quarantine"
        log.warning(
            "inbound id=%s quarantined: %s", item.id, row.last_error, extra={"trace": item.id}
        )
        return "Quarantine"
    else:
        row.status = "retry"
        delay = p.retry_base_seconds * 2 ** (row.attempts - 1)
        row.next_attempt_at = rt.clock() + timedelta(seconds=delay)
    return ""


def pending_count(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(InboundMessage)
            .where(InboundMessage.status.in_(("received", "retry", "processing")))
        )
        or 0
    )
