"""The states a stored row moves through, as ``StrEnum``s beside the models.

Each member equals its string (``InboundStatus.DONE == "done"``), so the columns keep
holding plain text, migrations see no change, and code that still compares strings
(the CLI, the web page) keeps working while the pipeline and tickets name them.
"""

from __future__ import annotations

from enum import StrEnum


class InboundStatus(StrEnum):
    """``InboundMessage.status``: received → processing → done | retry → … | quarantined;
    quarantined → dropped when an operator gives up on it (the row stays)."""

    RECEIVED = "received"
    PROCESSING = "processing"
    RETRY = "retry"
    DONE = "done"
    QUARANTINED = "quarantined"
    DROPPED = "dropped"


# Waiting for the pipeline: due, or held under a lease.
INBOUND_WAITING = (InboundStatus.RECEIVED, InboundStatus.RETRY, InboundStatus.PROCESSING)


class TicketStatus(StrEnum):
    """``Ticket.status``; operators set all but ``new`` with ``#status``."""

    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    RESOLVED = "resolved"
    CLOSED = "closed"


class OutboxStatus(StrEnum):
    """``OutboxMessage.status``: pending → sent | failed | suppressed | dropped;
    sent → bounced when a permanent DSN comes back."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    DROPPED = "dropped"
    BOUNCED = "bounced"


class ChallengeOutcome(StrEnum):
    """``Challenge.outcome`` once the challenge is used up."""

    CONFIRMED = "confirmed"
    REFUSED = "refused"
    EXPIRED = "expired"
