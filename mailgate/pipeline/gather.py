"""Gathering: every look-up one message's decision needs, made once, into one value.

Inside the batch transaction, before deciding, ``gather`` asks the database and the
settings everything ``policy.decide`` reads — the dedup key and an earlier delivery,
the queue and helpdesk address, a challenge token and its answer, threading, the
operator and their command block, the bounce's origin, the directory's account and
the matched ticket's state — and builds the recipient list (envelope, then To and Cc)
once.  The result holds the pure ``policy.Facts`` and the ``apply.Context`` that
applying the verdict needs (the operator row, the origin, the inbound row), so
nothing is looked up twice and ``decide`` stays free of I/O.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailgate.parse.message import ParsedMessage
from mailgate.pipeline import policy, priority, rules, spam, webfault
from mailgate.pipeline.context import PipelineContext
from mailgate.pipeline.facts import Evidence
from mailgate.store.models import Article, InboundMessage, Operator, Ticket
from mailgate.tickets import bounces, challenges, commands, correlate, operators
from mailgate.tickets.apply import Context
from mailgate.verify import directory
from mailgate.verify.credentials import Check

if TYPE_CHECKING:
    from mailgate.pipeline.claims import Claimed

_DELIVERED = "gather.delivered"  # session info: dedup key → stored article id, for a batch


@dataclass(frozen=True, slots=True)
class Gathered:
    facts: policy.Facts  # what the decision reads
    context: Context  # what applying it needs


def gather(
    session: Session,
    rt: PipelineContext,
    item: Claimed,
    row: InboundMessage,
    ev: Evidence,
    external_accounts: tuple[directory.AccountSpec, ...],
    password: Check | None = None,
) -> Gathered:
    """Look everything up for one claimed message, in the caller's transaction."""
    parsed = ev.parsed
    sender = parsed.from_.address if parsed.from_ else None
    recipients = (*item.rcpt_to, *(a.address for a in (*parsed.to, *parsed.cc)))
    dedup = dedup_key(parsed, ev.body_digest)
    duplicate_of = _delivered(session, dedup)
    queue, helpdesk_address = route(rt, recipients)
    token = challenges.find_token(recipients)
    for spec in external_accounts:
        directory.upsert(session, spec, rt.clock())
    now = rt.clock()
    clues = correlate.Clues(
        sender=sender,
        authenticated=ev.auth.result == "pass",
        recipients=recipients,
        key=rt.threading_key(session),
    )
    threading = correlate.find_ticket(
        session, parsed, clues, correlate.tag_pattern(rt.settings.helpdesk.subject_tag)
    )
    operator = operators.find(session, sender)
    thread, block = _matched(session, rt, threading, operator, parsed, now)
    # A bounce or auto-reply to our mail belongs with the mail that caused it (VERP
    # address, or our Message-ID in the returned copy), even without In-Reply-To.
    origin = None
    if ev.classification.kind in ("bounce", "report", "autoreply"):
        origin = bounces.find_origin(session, rt, item.rcpt_to, item.head, own_domains(rt))
        if threading.match is None and origin is not None:
            threading = origin.threading() or threading
    resolution = directory.resolve(session, sender, ev.identifiers)
    flood_limit = rt.settings.spam.new_tickets_per_sender_per_hour
    recent = 0
    if flood_limit and sender and threading.match is None:
        recent = _recent_tickets(session, sender, now)
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
        resolution=resolution,
        challenge_token=token,
        challenge_answer=challenges.read_answer(parsed.text) if token else None,
        priority=ev.assessment,
        operator=operator is not None,
        commands=block,
        thread=thread,
        password=password,
        abusive=ev.abusive,
        spam=_spam(rt, row, parsed),
        released=row.released_at is not None,
        rules=rt.settings.rules,
        target=_rules_target(item, parsed, sender, recipients),
        flood_limit=flood_limit,
        recent_new_tickets=recent,
    )
    context = Context(
        row=row,
        parsed=parsed,
        classification=ev.classification,
        auth=ev.auth,
        sender=sender,
        mail_from=item.mail_from,
        dedup=dedup,
        acknowledge=item.acknowledge,
        helpdesk_address=helpdesk_address,
        account=resolution.match,
        mentions=threading.mentioned,
        operator=operator,
        origin=origin,
        password_redacted=ev.password_redacted,
        # Asked for in the acknowledgement of a high-priority (incident) ticket only.
        missing=priority.missing_items(parsed.subject, parsed.text, ev.identifiers)
        if ev.assessment.priority == "high"
        else (),
        now=now,
        # A web fault report, at any priority: OS, browser and version, URL, screenshot.
        web_missing=webfault.missing(
            parsed.subject, parsed.text, (a.content_type for a in parsed.attachments)
        ),
        kb=ev.kb,
    )
    return Gathered(facts, context)


def ahead(session: Session, batch: list[tuple[Claimed, Evidence]]) -> None:
    """The look-ups every message of a batch makes, made once for the whole batch in the
    caller's transaction: the articles already stored under the batch's dedup keys and
    the senders' registered addresses (``directory.know_senders``).

    A dedup key that two messages of the batch share is left out: the first may store
    its article before the second asks, so the second asks the database itself.
    """
    keys = Counter(dedup_key(ev.parsed, ev.body_digest) for _, ev in batch)
    unique = [key for key, n in keys.items() if key is not None and n == 1]
    stored: dict[str, int | None] = dict.fromkeys(unique)
    if unique:
        query = select(Article.dedup_key, Article.id).where(Article.dedup_key.in_(unique))
        stored.update((str(key), article_id) for key, article_id in session.execute(query))
    session.info[_DELIVERED] = stored
    directory.know_senders(
        session, (ev.parsed.from_.address for _, ev in batch if ev.parsed.from_ is not None)
    )


def _delivered(session: Session, dedup: str | None) -> int | None:
    """The article an earlier delivery of this message left, if any."""
    if dedup is None:
        return None
    stored: dict[str, int | None] = session.info.get(_DELIVERED, {})
    if dedup in stored:
        return stored.pop(dedup)  # each key is asked about once per batch
    return session.scalar(select(Article.id).where(Article.dedup_key == dedup))


def _rules_target(
    item: Claimed, parsed: ParsedMessage, sender: str | None, recipients: tuple[str, ...]
) -> rules.Target:
    """What the admin's [[rules]] may match: From, envelope sender, every recipient,
    subject, the full body text and the headers."""
    return rules.Target(
        from_=sender or "",
        sender=item.mail_from or "",
        to=recipients,
        subject=parsed.subject,
        body=parsed.body_text,
        headers=parsed.headers,
    )


def _spam(rt: PipelineContext, row: InboundMessage, parsed: ParsedMessage) -> spam.Spam | None:
    """rspamd's own verdict first, then the one our MTA's filter wrote (when trusted)."""
    found = spam.from_scan(row.scan)
    if found is None and rt.settings.spam.headers:
        found = spam.from_headers(parsed.headers)
    return found


def _recent_tickets(session: Session, sender: str, now: datetime) -> int:
    """Tickets ``sender`` opened in the hour before ``now`` (this batch's included)."""
    since = now - timedelta(hours=1)
    query = select(func.count()).where(
        Ticket.requester == sender.lower(), Ticket.created_at > since
    )
    return int(session.scalar(query) or 0)


def _matched(
    session: Session,
    rt: PipelineContext,
    threading: correlate.Threading,
    operator: Operator | None,
    parsed: ParsedMessage,
    now: datetime,
) -> tuple[policy.Thread | None, commands.Block | None]:
    """The matched ticket's state, and an operator's command block when the mail came
    through an operator token (read only then: nobody else may give commands)."""
    if threading.match is None:
        return None, None
    matched = session.get_one(Ticket, threading.match.ticket_id)
    reopen_before = now - timedelta(days=rt.settings.threading.reopen_days)
    thread = policy.Thread(matched.status, matched.resolved_at, reopen_before)
    block = None
    if operator is not None and threading.match.by_operator_token:
        block = commands.read(
            parsed.text,
            queues=rt.settings.queue_names,
            operators=operators.names(session),
        )
    return thread, block


def route(rt: PipelineContext, recipients: tuple[str, ...]) -> tuple[str, str]:
    """The queue and helpdesk address a message was sent to.

    Envelope recipients come first and decide; a pipe delivery without them falls
    back to To/Cc.
    """
    for address in recipients:
        queue = rt.settings.queue_for(address)
        if queue is not None:
            local, _, domain = address.lower().rpartition("@")
            return queue, f"{local.split('+', 1)[0]}@{domain}"
    first, queue = next(iter(rt.settings.helpdesk.queues.items()))
    return queue, first.lower()


def own_addresses(rt: PipelineContext) -> frozenset[str]:
    return frozenset(a.lower() for a in rt.settings.helpdesk.queues)


def own_domains(rt: PipelineContext) -> frozenset[str]:
    return frozenset(a.rpartition("@")[2].lower() for a in rt.settings.helpdesk.queues)


def dedup_key(parsed: ParsedMessage, body_digest: str) -> str | None:
    """Message-ID + sender + body digest (``rawread.body_digest``, computed in the facts
    worker); None without a Message-ID (never guess)."""
    if not parsed.message_id:
        return None
    sender = parsed.from_.address.lower() if parsed.from_ else ""
    material = f"{parsed.message_id}\n{sender}\n{body_digest}".encode()
    return hashlib.sha256(material).hexdigest()
