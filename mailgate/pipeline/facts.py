"""The facts stage: everything learned from a message's bytes before any transaction.

``analyze`` parses, classifies, authenticates (DNS through the injected ``dnsfunc``),
redacts pasted passwords (from the texts and from a copy of the raw message), extracts
identifiers, assesses the priority, picks knowledge-base links and flags abusive
text; with password authorization on, it also hands
back the login and password a mail names together, for ``pipeline.passwords`` to check
once and forget.  It is pure CPU (DNS answers come with the batch,
``verify.lookahead``; a worker reads its message's bytes by id, ``pipeline.rawread``),
so it can run in other processes: ``PoolAnalyzer`` spreads a batch over worker
processes, which both uses every core (the daemon is otherwise one GIL-bound
process) and puts hostile input under a hard budget — a message that takes longer
than ``processing.parse_seconds`` gets its worker killed and is retried, then
quarantined with reason ``parse-budget``; a worker's address space is capped at
``processing.parse_memory_mb``, so a memory bomb fails that message alone.
``InlineAnalyzer`` does the same work in the calling thread (``parse_workers = 0``).
The workers log through a queue to the parent, which formats their records as its own,
each with the trace id of the message it is about (``mailgate.tracing``).
"""

from __future__ import annotations

import copy
import logging
import logging.handlers
import math
import multiprocessing
import queue
import resource
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from multiprocessing.pool import AsyncResult, Pool
from typing import Any, Protocol

from mailgate import tracing
from mailgate.config import KbArticle, PrioritySettings
from mailgate.errors import TemporaryError
from mailgate.parse import autoreply, parse
from mailgate.parse.bounds import ParseLimits
from mailgate.parse.message import Classification, ParsedMessage
from mailgate.pipeline import abusive, kb, priority
from mailgate.pipeline.rawread import RawReader, body_digest
from mailgate.verify.authn import AuthVerdict, DnsFunc, authenticate
from mailgate.verify.credentials import Credential
from mailgate.verify.identity import Identifiers, extract
from mailgate.verify.redact import redact, redact_raw, secrets

log = logging.getLogger(__name__)


class BudgetExceeded(TemporaryError):
    """The facts stage took longer than its budget (or its worker died) for this message."""


@dataclass(frozen=True, slots=True)
class FactsConfig:
    """The part of the settings the facts stage needs (small and picklable)."""

    limits: ParseLimits
    own_addresses: frozenset[str]
    own_domains: frozenset[str]
    trusted_authserv_ids: frozenset[str]
    priority: PrioritySettings
    password_authorization: bool = False  # carry a named login's password out, once
    kb: tuple[KbArticle, ...] = ()  # knowledge-base articles to suggest
    # Where a job without its bytes reads them (``pipeline.rawread``): in the worker.
    raw_reader: RawReader | None = None


@dataclass(frozen=True, slots=True)
class Evidence:
    parsed: ParsedMessage  # passwords already redacted from its texts
    classification: Classification
    auth: AuthVerdict
    identifiers: Identifiers
    password_redacted: bool
    assessment: priority.Assessment = priority.NORMAL
    # The raw copy with the same redaction, when the raw itself held a password: the
    # stored copy is replaced by it once the message is processed.
    redacted_raw: bytes | None = None
    credential: Credential | None = None  # only with password authorization on
    kb: tuple[tuple[str, str], ...] = ()  # (title, url) of the articles it points to
    abusive: bool = False  # insults or profanity in the customer's own words
    body_digest: str = ""  # of the whole body, for deduplication (``rawread.body_digest``)


@dataclass(frozen=True, slots=True)
class Job:
    key: int  # the inbound id
    raw: bytes | None  # None: read by the worker, through ``FactsConfig.raw_reader``
    mail_from: str | None

    def loaded(self, config: FactsConfig) -> Job:
        """This job with its bytes, read from the database when it came without them."""
        if self.raw is not None:
            return self
        if config.raw_reader is None:
            raise TemporaryError(f"inbound id={self.key}: no bytes and nowhere to read them")
        return replace(self, raw=config.raw_reader(self.key))

    @property
    def data(self) -> bytes:
        assert self.raw is not None, "Job.loaded() first"
        return self.raw


def analyze(
    raw: bytes, mail_from: str | None, config: FactsConfig, dnsfunc: DnsFunc, now: datetime
) -> Evidence:
    parsed = parse(raw, config.limits)
    classification = autoreply.classify(
        parsed,
        mail_from,
        own_addresses=config.own_addresses,
        own_message_id_domains=config.own_domains,
        raw=raw,
    )
    sender = parsed.from_.address if parsed.from_ else None
    auth = authenticate(
        raw,
        sender,
        parsed.headers,
        trusted_authserv_ids=config.trusted_authserv_ids,
        dnsfunc=dnsfunc,
        now=now,
    )
    found = secrets(f"{parsed.subject}\n{parsed.text}") if config.password_authorization else []
    parsed, redacted = _redact(parsed)
    identifiers = extract(parsed.subject, parsed.text, ignore_domains=config.own_domains)
    assessed = priority.assess(parsed.subject, parsed.text, parsed.headers, config.priority)
    # One login and the first password beside it; several logins name no one account.
    credential = None
    if found and len(identifiers.logins) == 1:
        credential = Credential(identifiers.logins[0], found[0])
    links = kb.suggest(config.kb, parsed.subject, parsed.text)
    return Evidence(
        parsed,
        classification,
        auth,
        identifiers,
        redacted,
        assessed,
        _redacted_raw(raw) if redacted else None,
        credential,
        links,
        abusive.is_abusive(parsed.subject, parsed.text),
        body_digest(raw),
    )


def _redacted_raw(raw: bytes) -> bytes | None:
    """The stored copy without the password, or None to keep it as it is: a message
    the email package cannot write back must still be processed, never retried."""
    try:
        return redact_raw(raw)
    except Exception as exc:  # noqa: BLE001 -- hostile structure; the articles are clean
        log.warning("the raw copy could not be redacted (%s); it is kept as received", exc)
        return None


def _redact(parsed: ParsedMessage) -> tuple[ParsedMessage, bool]:
    subject, in_subject = redact(parsed.subject)
    text, in_text = redact(parsed.text)
    body, in_body = redact(parsed.body_text)
    html, in_html = redact(parsed.html) if parsed.html else (None, False)
    if not (in_subject or in_text or in_body or in_html):
        return parsed, False
    return replace(parsed, subject=subject, text=text, body_text=body, html=html), True


Outcome = Evidence | BaseException


class Analyzer(Protocol):
    def run(
        self, jobs: Sequence[Job], config: FactsConfig, dnsfunc: DnsFunc, now: datetime
    ) -> dict[int, Outcome]:
        """Evidence, or the exception that stopped it, for every job."""

    def start(self) -> None:
        """Get ready before the first message (start worker processes)."""

    def close(self) -> None: ...


class InlineAnalyzer:
    def run(
        self, jobs: Sequence[Job], config: FactsConfig, dnsfunc: DnsFunc, now: datetime
    ) -> dict[int, Outcome]:
        results: dict[int, Outcome] = {}
        for job in jobs:
            try:
                with tracing.about(job.key):
                    loaded = job.loaded(config)
                    results[job.key] = analyze(loaded.data, job.mail_from, config, dnsfunc, now)
            except Exception as exc:  # noqa: BLE001 -- the per-message boundary; caller logs
                results[job.key] = exc
        return results

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


def _start_worker(megabytes: int, log_queue: Any, levels: dict[str, int]) -> None:
    """Set up a worker process: its memory cap, and its logging through the parent."""
    # A worker's whole address space: a decompression or MIME bomb raises MemoryError
    # in that worker, for that message, instead of swapping the host.
    limit = megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # Ctrl-C in the terminal reaches the whole process group: the daemon drains and
    # closes the pool itself, so a worker must not die under a batch in hand (the pool
    # would try to replace it through a forkserver that is going away).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Records (ours and mail-parser's) go to the parent, which formats them like its
    # own; without this they were bare lines on stderr from Python's last resort.
    handler = _ToParent(log_queue)
    handler.addFilter(tracing.Fields())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)


class _ToParent(logging.handlers.QueueHandler):
    """Sends a worker's records to the parent as plain, picklable values."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:  # tracebacks do not pickle; their text does
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record


def _logger_levels() -> dict[str, int]:
    """The levels set in this process (root and named loggers), for the workers."""
    levels = {"": logging.getLogger().level}
    for name, logger in logging.Logger.manager.loggerDict.items():
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    return levels


class _FromWorkers:
    """A thread in the parent handing the workers' records to its own loggers."""

    def __init__(self, log_queue: Any) -> None:
        self.queue = log_queue
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="facts-logs", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            try:
                # Once stopping, only what has already arrived is handed over.
                record = self.queue.get(timeout=0.2) if not stopping else self.queue.get_nowait()
            except queue.Empty:
                if stopping:
                    return
                continue
            except (EOFError, OSError, ValueError):  # the pool and its queue are gone
                return
            logging.getLogger(record.name).handle(record)

    def stop(self) -> None:
        # Never puts into the queue: a killed worker may hold its write lock.
        self._stop.set()
        self._thread.join(timeout=2)


def _ready(_: int) -> bool:
    return True


class _Alarm(BaseException):
    """Raised by the budget alarm; a BaseException so that the parser's own
    ``except Exception`` (which turns failures into "unparseable") lets it through."""


def _over_budget(_signum: int, _frame: object) -> None:
    raise _Alarm


def analyze_job(
    job: Job, config: FactsConfig, dnsfunc: DnsFunc, now: datetime, budget: float
) -> Evidence:
    # The batch deadline in ``PoolAnalyzer.run`` is shared by the whole batch, so on its
    # own it lets one slow message run for ``budget`` × rounds while the messages
    # queued behind it wait.  A per-message alarm stops pure-Python work (HTML to
    # text, header decoding) at the budget; the batch deadline still kills a worker
    # stuck in C code that never returns to the interpreter.
    previous = signal.signal(signal.SIGALRM, _over_budget)
    signal.setitimer(signal.ITIMER_REAL, budget)
    try:
        return analyze(job.loaded(config).data, job.mail_from, config, dnsfunc, now)
    except _Alarm:
        raise BudgetExceeded(f"facts stage over its budget of {budget:g} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


JobFunction = Callable[[Job, FactsConfig, DnsFunc, datetime, float], Evidence]


def _traced(
    function: JobFunction,
    job: Job,
    config: FactsConfig,
    dnsfunc: DnsFunc,
    now: datetime,
    budget: float,
) -> Evidence:
    """What a worker runs: ``function`` for one message, its log lines carrying the
    message's trace id."""
    with tracing.about(job.key):
        # Read here, not in the daemon: the bytes never cross the pipe (pipeline.rawread).
        return function(job.loaded(config), config, dnsfunc, now, budget)


# What the forkserver imports before it forks a worker (``PoolAnalyzer``); lookahead
# because every job carries its ``Answers``, which a worker unpickles.
PRELOAD = ("mailgate.pipeline.facts", "mailgate.verify.dnscache", "mailgate.verify.lookahead")


class PoolAnalyzer:
    """Runs ``analyze`` in ``workers`` processes under a time and memory budget.

    The daemon does not call ``start``: the pool and its processes come up with the
    first batch, so an idle daemon is one process.

    ``job`` is what a worker runs for each message (a module-level function, so the
    workers can import it); tests give one that misbehaves the ways a parser can.
    """

    def __init__(
        self,
        workers: int,
        budget_seconds: float,
        memory_mb: int,
        job: JobFunction | None = None,
    ) -> None:
        self.workers = workers
        self.budget = budget_seconds
        self.memory_mb = memory_mb
        self.job: JobFunction = job or analyze_job
        self._pool: Pool | None = None
        self._logs: _FromWorkers | None = None

    def _get_pool(self) -> Pool:
        if self._pool is None:
            # forkserver: workers start from a clean, single-threaded process, never
            # from a fork of the threaded daemon.  The server imports the facts stage
            # (and the DNS cache a worker unpickles with its first job) once, and each
            # worker is a fork of it: started at once, holding only these modules.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(list(PRELOAD))
            log_queue = context.Queue()  # one per pool: a killed pool takes it along
            self._logs = _FromWorkers(log_queue)
            self._pool = context.Pool(
                self.workers,
                initializer=_start_worker,
                initargs=(self.memory_mb, log_queue, _logger_levels()),
            )
        return self._pool

    def start(self) -> None:
        # Workers import mailgate (about a second); do it now, not while the first
        # customer's acknowledgement waits.
        pool = self._get_pool()
        pool.map(_ready, range(self.workers))

    def run(
        self, jobs: Sequence[Job], config: FactsConfig, dnsfunc: DnsFunc, now: datetime
    ) -> dict[int, Outcome]:
        pool = self._get_pool()
        pending: list[tuple[Job, AsyncResult[Evidence]]] = [
            (job, pool.apply_async(_traced, (self.job, job, config, dnsfunc, now, self.budget)))
            for job in jobs
        ]
        # Each worker may take the whole budget for each message it is handed.
        rounds = math.ceil(len(jobs) / self.workers)
        deadline = time.monotonic() + self.budget * max(rounds, 1)
        results: dict[int, Outcome] = {}
        overrun = False
        for job, result in pending:
            try:
                results[job.key] = result.get(timeout=max(deadline - time.monotonic(), 0.0))
            except multiprocessing.TimeoutError:
                overrun = True
                results[job.key] = BudgetExceeded(
                    f"facts stage over its budget of {self.budget:g} s (or its worker died)"
                )
            except Exception as exc:  # noqa: BLE001 -- raised in the worker for this message
                results[job.key] = exc
        if overrun:
            # The stuck worker cannot be interrupted: replace the whole pool.
            log.warning("facts: budget exceeded; restarting the worker processes")
            self.close()
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
        if self._logs is not None:
            self._logs.stop()
            self._logs = None
