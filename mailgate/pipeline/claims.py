"""Claiming stored messages for processing, and handing them to the facts stage.

A **claim** is a short transaction: due messages (received, or a retry whose time has
come, or "processing" under a lease that ran out because its worker died) become
"processing" under this worker's lease, at most ``CLAIM_BYTES`` of mail at a time
(``SKIP LOCKED`` on PostgreSQL, so two daemons never claim the same row).  The claim
loads only each message's head; the facts workers read the whole message themselves by
id (``pipeline.rawread``).  ``find_facts`` asks the batch's DNS names ahead
(``verify.lookahead``) and runs the facts stage with no transaction open.  What happens
next — the batch's write transaction — is ``pipeline.batches``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import LargeBinary, func, or_, select
from sqlalchemy.orm import defer

from mailgate.pipeline import gather
from mailgate.pipeline.context import PipelineContext
from mailgate.pipeline.facts import FactsConfig, Job, Outcome
from mailgate.pipeline.rawread import raw_reader
from mailgate.store.db import translate_db_errors
from mailgate.store.models import InboundMessage
from mailgate.store.states import InboundStatus
from mailgate.tickets import bounces
from mailgate.verify.lookahead import batch_dns

CLAIM_BYTES = 32 * 1024 * 1024  # raw bytes analyzed per claimed batch
HEAD_BYTES = bounces.SCAN_BYTES


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    # The first HEAD_BYTES of the message: all the daemon reads of it (DNS names, a
    # bounce's returned headers); the facts workers read the whole (pipeline.rawread).
    head: bytes
    mail_from: str | None
    rcpt_to: tuple[str, ...]
    acknowledge: bool
    attempts: int
    source: str = "smtp"
    scanned: bool = False  # rspamd was asked (or tried) already, or the message was released


def claim(rt: PipelineContext, limit: int) -> list[Claimed]:
    now = rt.clock()
    lease = timedelta(seconds=rt.settings.processing.lease_seconds)
    with rt.sessions.begin() as session:
        rows = session.execute(
            select(
                InboundMessage, func.substr(InboundMessage.raw, 1, HEAD_BYTES, type_=LargeBinary)
            )
            .options(defer(InboundMessage.raw))
            .where(
                or_(
                    InboundMessage.status.in_((InboundStatus.RECEIVED, InboundStatus.RETRY))
                    & (InboundMessage.next_attempt_at <= now),
                    # A worker that died mid-message: its lease ran out.
                    (InboundMessage.status == InboundStatus.PROCESSING)
                    & (InboundMessage.lease_until < now),
                )
            )
            .order_by(InboundMessage.next_attempt_at, InboundMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        claimed: list[Claimed] = []
        carried = 0
        for row, head in rows:
            if claimed and carried + row.size > CLAIM_BYTES:
                break
            carried += row.size
            row.status = InboundStatus.PROCESSING
            row.lease_until = now + lease
            row.attempts += 1
            claimed.append(
                Claimed(
                    row.id,
                    bytes(head or b""),
                    row.mail_from,
                    tuple(row.rcpt_to),
                    row.acknowledge,
                    row.attempts,
                    row.source,
                    row.scan is not None or row.released_at is not None,
                )
            )
    return claimed


def facts_config(rt: PipelineContext) -> FactsConfig:
    return FactsConfig(
        limits=rt.parse_limits,
        own_addresses=gather.own_addresses(rt),
        own_domains=gather.own_domains(rt),
        trusted_authserv_ids=frozenset(rt.settings.verify.trusted_authserv_ids),
        priority=rt.settings.priority,
        password_authorization=rt.settings.verify.password_authorization,
        kb=rt.settings.kb,
        raw_reader=raw_reader(rt.settings.database.url),
    )


def find_facts(rt: PipelineContext, batch: list[Claimed]) -> dict[int, Outcome]:
    """The facts stage for a batch: evidence, or what stopped it, per inbound id."""
    config = facts_config(rt)
    # The workers read the bytes themselves; only a database this process alone sees
    # (SQLite in memory) sends them along.
    jobs = [
        Job(item.id, None if config.raw_reader else stored_raw(rt, item.id), item.mail_from)
        for item in batch
    ]
    # The batch's DKIM/DMARC names asked together, under a budget (verify.lookahead).
    dns = batch_dns(rt.dns, [item.head for item in batch])
    return rt.analyzer.run(jobs, config, dns, rt.clock())


def stored_raw(rt: PipelineContext, inbound_id: int) -> bytes:
    """The whole stored message, for the daemon's rare needs of it (rspamd)."""
    with translate_db_errors(), rt.sessions() as session:
        raw = session.scalar(select(InboundMessage.raw).where(InboundMessage.id == inbound_id))
    return raw or b""
