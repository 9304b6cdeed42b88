"""Processing of stored messages — the only place an inbound message becomes ticket data.

For each message: **claim** it (``pipeline.claims``: a short transaction; a lease lets
another worker reclaim it if we die), work out its **facts** with no transaction open
(parse, classify, authenticate; with ``[spam] rspamd_url`` set, ask rspamd about mail
the listeners did not scan — pipe, IMAP — see ``ingest.scan``), then in one write
transaction **gather** what the decision needs (``pipeline.gather``: threading,
duplicates, operator, directory), **decide** a ``Verdict`` (``pipeline.policy``),
**apply** it (``tickets.apply``: ticket, article, attachments, outbox rows) and record
the inbound status.  Failures are caught per message: ``PermanentError`` quarantines at
once with its reason; anything else is retried with exponential backoff and quarantined
once ``max_attempts`` is spent.
One bad message never blocks the others, and none is ever deleted.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import event, func, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, defer

from mailgate import tracing
from mailgate.errors import MailgateError, PermanentError
from mailgate.pipeline import gather, passwords, policy
from mailgate.pipeline.claims import Claimed, claim, find_facts, stored_raw
from mailgate.pipeline.context import PipelineContext
from mailgate.pipeline.facts import BudgetExceeded, Evidence, Outcome
from mailgate.store.db import translate_db_errors
from mailgate.store.models import InboundMessage, Ticket
from mailgate.store.states import INBOUND_WAITING, InboundStatus
from mailgate.tickets import apply
from mailgate.tickets.verdicts import OpenTicket
from mailgate.verify import directory
from mailgate.verify.redact import RAW_REDACTED

# Named after the stage, not the module: admins filter logs on it (docs/deploy.md).
log = logging.getLogger("mailgate.pipeline")


class Worker:
    """Runs the pipeline over due messages and remembers what it holds.

    When the database goes away mid-batch, the messages this worker claimed stay
    "processing" under its lease.  Rather than let them wait for the lease to run out,
    the worker releases them itself as soon as the database answers again.

    With ``ahead`` (``drain`` and the daemon), a worker that finds a full batch claims
    the next one too and has its facts worked out by the worker processes while it
    writes the current one, so the facts stage and the write transaction overlap and
    both cores stay busy under a backlog.  The next call processes that batch;
    ``close`` gives its claims back when nobody will.
    """

    def __init__(self, rt: PipelineContext, ahead: bool = False) -> None:
        self.rt = rt
        self.ahead = ahead
        self.unsettled: dict[int, int] = {}  # inbound id → attempts at claim time
        self._next: _Ahead | None = None
        self._failed = False
        self._running = threading.Lock()  # ``close`` from another thread waits for a run

    def run_pending(self, limit: int = 20) -> int:
        """Claim and process up to ``limit`` due messages; return how many were claimed.

        Raises ``DatabaseUnavailable``; what it had claimed is released on the next call.
        """
        with self._running:
            try:
                return self._run(limit)
            except BaseException:
                self._failed = True
                raise

    def _run(self, limit: int) -> int:
        with translate_db_errors():
            if self._failed:
                self._drop_next()
                self._release()
                self._failed = False
            following, self._next = self._next, None
            batch = following.batch if following is not None else claim(self.rt, limit)
        self.unsettled.update((item.id, item.attempts) for item in batch)
        if not batch:
            return 0
        found = following.facts() if following is not None else find_facts(self.rt, batch)
        if self.ahead and len(batch) >= limit:  # a backlog: more is waiting
            with translate_db_errors():
                upcoming = claim(self.rt, limit)
            self.unsettled.update((item.id, item.attempts) for item in upcoming)
            if upcoming:
                self._next = _Ahead(self.rt, upcoming)
        process_batch(self.rt, batch, found)
        for item in batch:
            del self.unsettled[item.id]
        return len(batch)

    def close(self, timeout: float = 10.0) -> None:
        """Give back the claims of a batch worked out ahead (the daemon stops)."""
        if not self._running.acquire(timeout=timeout):
            return  # a run still going: what it holds waits for its lease
        try:
            if self._next is None:
                return
            self._drop_next()
            with translate_db_errors():
                self._release()
        except MailgateError as exc:  # their lease runs out instead
            log.warning("could not give back %s claimed messages: %s", len(self.unsettled), exc)
        finally:
            self._running.release()

    def _drop_next(self) -> None:
        if self._next is not None:
            self._next.wait()  # the worker processes are free again
            self._next = None

    def _release(self) -> None:
        now = self.rt.clock()
        with self.rt.sessions.begin() as session:
            for inbound_id, attempts in self.unsettled.items():
                session.execute(
                    update(InboundMessage)
                    .where(
                        InboundMessage.id == inbound_id,
                        InboundMessage.status == InboundStatus.PROCESSING,
                        InboundMessage.attempts == attempts,
                    )
                    # The outage was not the message's fault: give the attempt back.
                    .values(
                        status=InboundStatus.RETRY,
                        attempts=attempts - 1,
                        lease_until=None,
                        next_attempt_at=now,
                    )
                )
        self.unsettled.clear()


class _Ahead:
    """The next batch, claimed, its facts worked out in a thread meanwhile (the thread
    only waits on the worker processes, so the writer keeps the interpreter)."""

    def __init__(self, rt: PipelineContext, batch: list[Claimed]) -> None:
        self.batch = batch
        self._found: dict[int, Outcome] | BaseException = {}
        self._thread = threading.Thread(
            target=self._work, args=(rt,), name="facts-ahead", daemon=True
        )
        self._thread.start()

    def _work(self, rt: PipelineContext) -> None:
        try:
            self._found = find_facts(rt, self.batch)
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller by facts()
            self._found = exc

    def wait(self) -> None:
        self._thread.join()

    def facts(self) -> dict[int, Outcome]:
        self.wait()
        if isinstance(self._found, BaseException):
            raise self._found
        return self._found


def run_pending(rt: PipelineContext, limit: int = 20) -> int:
    """One batch by a short-lived worker (tests, ``mailgate drain``)."""
    return Worker(rt).run_pending(limit)


def process(rt: PipelineContext, item: Claimed) -> None:
    """Process one claimed message (a batch of one)."""
    process_batch(rt, [item])


def process_batch(
    rt: PipelineContext, batch: list[Claimed], found: dict[int, Outcome] | None = None
) -> None:
    """Process claimed messages: facts for all first (unless ``found`` already), then
    one transaction.

    Each message is applied inside its own savepoint, so one that fails rolls back alone
    and has its failure recorded, while the batch shares one commit (one fsync instead
    of one per message).  Never raises for a problem with a message; raises
    ``DatabaseUnavailable`` when the database goes away (the caller still holds the
    claims and releases them).
    """
    outcomes: list[tuple[str, list[str]]] = []
    evidence: dict[int, Evidence] = {}
    external: dict[int, tuple[directory.AccountSpec, ...]] = {}
    checked: dict[int, passwords.Check] = {}
    failed: dict[int, tuple[BaseException, bool]] = {}
    if found is None:
        found = find_facts(rt, batch)
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
            if result.credential is not None:  # checked once, here, then forgotten
                checked[item.id] = passwords.check(rt, result.credential, external.get(item.id, ()))
                evidence[item.id] = replace(result, credential=None)
    scans = _scan_stored(rt, [item for item in batch if item.id in evidence])
    with translate_db_errors(), rt.sessions.begin() as session:
        kept = _keep_for_the_batch(session)
        # One query loads every row of the batch into the session, so each message's
        # own look-up (``_inbound_row``) costs no round trip.
        session.scalars(
            select(InboundMessage)
            .options(defer(InboundMessage.raw))
            .where(InboundMessage.id.in_([item.id for item in batch]))
        ).all()
        gather.ahead(session, [(item, evidence[item.id]) for item in batch if item.id in evidence])
        for item in batch:
            if item.id in failed:
                outcomes.append(_record_failure(session, rt, item, *failed[item.id]))
                continue
            try:
                with tracing.about(item.id), session.begin_nested():
                    outcomes.append(
                        _decide_and_apply(
                            session,
                            rt,
                            item,
                            evidence[item.id],
                            external.get(item.id, ()),
                            checked.get(item.id),
                            scans.get(item.id),
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
        kept.clear()
    for verdict, hits in outcomes:  # counted once the batch is committed
        if verdict:
            _count(rt, verdict, hits)


def _keep_for_the_batch(session: Session) -> list[object]:
    """Hold every object the batch transaction loads or stores until it ends.

    The session's identity map keeps only weak references: a ticket opened or an
    inbound row loaded for one message was forgotten as soon as nothing referred to
    it, and the next ``session.get`` of it (the verdict's log line, the follow-up in
    the same batch, the apply step after gather) went back to the database — 1.6
    SELECTs per message in a profile of ``drain``.
    """
    kept: list[object] = []

    def keep(_session: Session, instance: object) -> None:
        kept.append(instance)

    event.listen(session, "pending_to_persistent", keep)
    event.listen(session, "loaded_as_persistent", keep)
    return kept


def _count(rt: PipelineContext, verdict: str, hits: list[str]) -> None:
    m = rt.metrics
    m.processed.labels(verdict).inc()
    for hit in hits:
        kind, _, rest = hit.partition(":")
        if kind == "spam":
            m.spam_held.labels(rest.partition(":")[0]).inc()
        elif kind == "flood":
            m.flood_held.inc()
        elif kind == "rule":
            m.rule_hits.labels(rest).inc()


def _scan_stored(rt: PipelineContext, batch: list[Claimed]) -> dict[int, dict[str, Any]]:
    """rspamd's answer for stored messages nobody asked it about yet (pipe, IMAP, import;
    the listeners ask during the session), outside any transaction.  Fails open."""
    scanner = rt.scanner
    if scanner is None:
        return {}
    scans: dict[int, dict[str, Any]] = {}
    for item in batch:
        if item.scanned:
            continue
        result = scanner.check(stored_raw(rt, item.id), item.mail_from, item.rcpt_to)
        if result.unscanned:
            log.warning(
                "inbound id=%s: rspamd not asked, processed unscanned: %s",
                item.id,
                result.error,
                extra={"trace": item.id},
            )
            rt.metrics.spam_unscanned.labels(item.source).inc()
        scans[item.id] = result.record()
    return scans


def _decide_and_apply(
    session: Session,
    rt: PipelineContext,
    item: Claimed,
    ev: Evidence,
    external_accounts: tuple[directory.AccountSpec, ...] = (),
    password: passwords.Check | None = None,
    scan: dict[str, Any] | None = None,
) -> tuple[str, list[str]]:
    """Gather, decide and apply in the caller's transaction; return the verdict's name
    and rule hits ("" when another worker took the message over)."""
    row = _inbound_row(session, item.id)
    if row is None or row.status != InboundStatus.PROCESSING or row.attempts != item.attempts:
        return "", []  # someone else took it over after our lease ran out
    if scan is not None:
        row.scan = scan
    found = gather.gather(session, rt, item, row, ev, external_accounts, password)
    verdict = policy.decide(found.facts)
    hits = apply.apply(session, rt, verdict, found.context)
    if password is not None and isinstance(verdict, OpenTicket):
        sender = found.facts.sender or ""
        now = found.context.now
        hits.extend(passwords.record(session, rt, password, sender, row.ticket_id, row.id, now))
    if row.status != InboundStatus.QUARANTINED:
        row.status = InboundStatus.DONE
        if ev.redacted_raw is not None:
            # The stored copy keeps no password the articles hide; the rule hit records
            # that it was rewritten (``mailgate export`` says so).  Quarantined mail
            # keeps its bytes for a replay: only an admin reads that.
            row.raw = ev.redacted_raw
            row.size = len(ev.redacted_raw)
            hits.append(RAW_REDACTED)
    row.verdict = type(verdict).__name__
    row.rule_hits = hits
    row.lease_until = None
    row.processed_at = found.context.now
    number = None
    if row.ticket_id is not None:
        number = session.get_one(Ticket, row.ticket_id).number  # in the session already
        tracing.ticket_known(number)
    log.info(
        "inbound id=%s verdict=%s ticket=%s hits=%s",
        item.id,
        row.verdict,
        number,
        ",".join(hits),
        extra={"trace": item.id, "ticket": number},
    )
    return row.verdict, hits


def _inbound_row(session: Session, inbound_id: int) -> InboundMessage | None:
    """The inbound row to update, without its raw bytes: the claim already carried
    them, and loading them again cost a copy of every message per attempt."""
    return session.get(InboundMessage, inbound_id, options=[defer(InboundMessage.raw)])


def _record_failure(
    session: Session, rt: PipelineContext, item: Claimed, exc: BaseException, permanent: bool
) -> tuple[str, list[str]]:
    """Record a failed attempt; return "Quarantine" when the message was quarantined."""
    p = rt.settings.processing
    reason = exc.reason if isinstance(exc, PermanentError) else None
    row = _inbound_row(session, item.id)
    if row is None or row.attempts != item.attempts:
        return "", []
    row.last_error = f"{type(exc).__name__}: {exc}"[:4000]
    row.lease_until = None
    if permanent or row.attempts >= p.max_attempts:
        row.status = InboundStatus.QUARANTINED
        exhausted = "parse-budget" if isinstance(exc, BudgetExceeded) else "attempts-exhausted"
        row.reason = reason or exhausted
        row.verdict = "Quarantine"
        log.warning(
            "inbound id=%s quarantined: %s", item.id, row.last_error, extra={"trace": item.id}
        )
        return "Quarantine", []
    else:
        row.status = InboundStatus.RETRY
        delay = p.retry_base_seconds * 2 ** (row.attempts - 1)
        row.next_attempt_at = rt.clock() + timedelta(seconds=delay)
    return "", []


def pending_count(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(InboundMessage)
            .where(InboundMessage.status.in_(INBOUND_WAITING))
        )
        or 0
    )
