"""Prometheus metrics: what the daemon counts as mail flows through it, and what the
store holds at scrape time.

Every ``Runtime`` owns its own ``CollectorRegistry`` (tests build many runtimes in one
process; a process-global registry would refuse the second set of names).  Counters are
incremented where the event happens — the listener, the pipeline, the outbox — and the
gauges that describe the backlog (quarantine by reason, outbox depth and age, messages
waiting) are read from the database when ``/metrics`` is scraped, so they are right
even after a restart and across several instances sharing one database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

LISTENERS = ("smtp", "lmtp")
INGEST_RESULTS = ("accepted", "rejected", "tempfailed")
# Receipt → acknowledgement handed to the relay: seconds when healthy, hours when the
# relay was away, so the buckets span both.
ACK_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


@dataclass(frozen=True, slots=True)
class StoreState:
    quarantined: dict[str, int] = field(default_factory=dict)  # reason → messages
    inbound_pending: int = 0
    outbox_pending: int = 0
    outbox_failed: int = 0
    outbox_oldest_age: float = 0.0  # seconds; 0 when nothing is pending


def read_state(session: Session, now: datetime) -> StoreState:
    # The listeners count into these metrics before the store is open (daemon.boot):
    # the store's modules load when the first scrape reads it.
    from sqlalchemy import func, select

    from mailgate.store.models import InboundMessage, OutboxMessage

    quarantined = session.execute(
        select(InboundMessage.reason, func.count())
        .where(InboundMessage.status == "quarantined")
        .group_by(InboundMessage.reason)
    ).all()
    inbound_pending = session.scalar(
        select(func.count()).where(InboundMessage.status.in_(("received", "retry", "processing")))
    )
    outbox = dict(
        session.execute(
            select(OutboxMessage.status, func.count())
            .where(OutboxMessage.status.in_(("pending", "failed")))
            .group_by(OutboxMessage.status)
        ).all()
    )
    oldest = session.scalar(
        select(func.min(OutboxMessage.created_at)).where(OutboxMessage.status == "pending")
    )
    return StoreState(
        quarantined=_by_reason(quarantined),
        inbound_pending=int(inbound_pending or 0),
        outbox_pending=int(outbox.get("pending", 0)),
        outbox_failed=int(outbox.get("failed", 0)),
        outbox_oldest_age=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
    )


def _by_reason(rows: Iterable[Any]) -> dict[str, int]:
    """Counts by reason code.  Spam and flood reasons carry a score or a count after
    their code ("spam: add header score=7.30"); the label keeps the code alone, or every
    score would be a time series of its own."""
    counts: dict[str, int] = {}
    for reason, n in rows:
        code = reason or "unknown"
        if code.startswith(("spam:", "flood:")):
            code = code.partition(":")[0]
        counts[code] = counts.get(code, 0) + int(n)
    return counts


class _StoreCollector(Collector):
    """Gauges read from the database at scrape time; ``mailgate_store_up`` 0 if it fails."""

    def __init__(self, probe: Callable[[], StoreState]) -> None:
        self.probe = probe

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("mailgate_store_up", "1 if the store answered this scrape")
        try:
            state = self.probe()
        except Exception as exc:  # noqa: BLE001 -- a scrape must still answer; say why in the log
            log.warning("metrics: store unreadable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        quarantine = GaugeMetricFamily(
            "mailgate_quarantine_messages", "Messages in quarantine, by reason", labels=["reason"]
        )
        for reason, count in sorted(state.quarantined.items()):
            quarantine.add_metric([reason], count)
        yield quarantine
        yield GaugeMetricFamily(
            "mailgate_inbound_pending_messages",
            "Stored messages not yet processed (received, retry, processing)",
            value=state.inbound_pending,
        )
        yield GaugeMetricFamily(
            "mailgate_outbox_pending_messages",
            "Outgoing mail not yet sent",
            value=state.outbox_pending,
        )
        yield GaugeMetricFamily(
            "mailgate_outbox_failed_messages",
            "Outgoing mail given up on (5xx or lifetime exceeded)",
            value=state.outbox_failed,
        )
        yield GaugeMetricFamily(
            "mailgate_outbox_oldest_pending_age_seconds",
            "Age of the oldest unsent outgoing mail (0 when none)",
            value=state.outbox_oldest_age,
        )


class Metrics:
    """The counters of one daemon, in a registry of its own."""

    def __init__(self) -> None:
        # No ``*_created`` series beside each counter: a timestamp per series that
        # dashboards do not use and that doubles what Prometheus stores.  The switch
        # is process-wide in prometheus_client; every registry here wants it off.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self._store_watched = False
        self.registry = CollectorRegistry()
        r = self.registry
        self.ingest = Counter(
            "mailgate_ingest_messages",
            "Messages offered by an MTA, by listener and what we answered "
            "(rejected counts refused recipients and refused data)",
            ["listener", "result"],
            registry=r,
        )
        for listener in LISTENERS:
            for result in INGEST_RESULTS:
                self.ingest.labels(listener, result)
        self.processed = Counter(
            "mailgate_processed_messages",
            "Processing outcomes, by verdict",
            ["verdict"],
            registry=r,
        )
        self.spam_held = Counter(
            "mailgate_spam_held_messages",
            "Messages held in the quarantine as spam, by whose verdict (header, rspamd)",
            ["source"],
            registry=r,
        )
        self.spam_refused = Counter(
            "mailgate_spam_refused_messages",
            "Messages refused in the SMTP/LMTP session because rspamd said reject",
            ["listener"],
            registry=r,
        )
        self.spam_unscanned = Counter(
            "mailgate_spam_unscanned_messages",
            "Messages let through unscanned because rspamd was away or slow, by source",
            ["source"],
            registry=r,
        )
        self.flood_held = Counter(
            "mailgate_flood_held_messages",
            "New tickets held because their sender went over the hourly limit",
            registry=r,
        )
        self.rule_hits = Counter(
            "mailgate_rule_hits",
            "Messages an admin's [[rules]] entry matched",
            ["rule"],
            registry=r,
        )
        self.outbox = Counter(
            "mailgate_outbox_attempts",
            "Outgoing delivery attempts, by kind and result (sent, retry, failed)",
            ["kind", "result"],
            registry=r,
        )
        self.receipt_to_ack = Histogram(
            "mailgate_receipt_to_ack_seconds",
            "From storing a message to handing its acknowledgement to the relay",
            buckets=ACK_BUCKETS,
            registry=r,
        )
        # The outbox counts every automatic mail it holds back (``replies.gates``:
        # per-recipient limit, suppressed address, circuit breaker); the SLA job counts
        # breaches.
        self.rate_limit_drops = Counter(
            "mailgate_rate_limit_drops",
            "Automatic mails not sent: per-recipient limit, suppressed address or breaker",
            registry=r,
        )
        self.sla_breaches = Counter(
            "mailgate_sla_breaches", "Tickets whose SLA due time passed unanswered", registry=r
        )
        self.password_checks = Counter(
            "mailgate_password_checks",
            "Account passwords in mail checked for password authorization, by outcome "
            "(verified, failed, suspended)",
            ["outcome"],
            registry=r,
        )
        for outcome in ("verified", "failed", "suspended"):
            self.password_checks.labels(outcome)
        self.password_lockouts = Counter(
            "mailgate_password_lockouts",
            "Accounts whose password authorization was suspended after wrong passwords",
            registry=r,
        )
        self.up = Gauge("mailgate_listeners_up", "Listeners accepting connections", registry=r)

    def watch_store(
        self, sessions: Callable[[], AbstractContextManager[Session]], clock: Callable[[], datetime]
    ) -> None:
        """Add the database-backed gauges (the daemon does; one-shot commands need not)."""
        if self._store_watched:  # a runtime may host one daemon after another (tests)
            return
        self._store_watched = True

        def probe() -> StoreState:
            with sessions() as session:
                return read_state(session, clock())

        self.registry.register(_StoreCollector(probe))

    def render(self) -> bytes:
        return generate_latest(self.registry)
