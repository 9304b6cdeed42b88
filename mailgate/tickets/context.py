"""What the tickets layer reads from the runtime it is handed, as a protocol.

Ticket work queues mail (so it needs what ``replies.context.QueueContext`` names) and
opens its own transactions for the timed jobs (SLA, challenges, retention); it never
imports the daemon that wires those parts.  The daemon's ``Runtime`` record fits.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import Counter
from sqlalchemy.orm import Session, sessionmaker

from mailgate.replies.context import QueueContext


class TicketMetrics(Protocol):
    @property
    def sla_breaches(self) -> Counter: ...


class TicketContext(QueueContext, Protocol):
    """``QueueContext`` plus the database and the SLA counter."""

    @property
    def sessions(self) -> sessionmaker[Session]: ...
    @property
    def metrics(self) -> TicketMetrics: ...
