"""The state enums are the strings already stored: rows written before them, the CLI
and the web page keep comparing plain text, so a member must equal its old literal."""

from __future__ import annotations

from mailgate.store.states import ChallengeOutcome, InboundStatus, OutboxStatus, TicketStatus
from mailgate.tickets.commands import STATUSES, read


def test_members_equal_the_stored_strings() -> None:
    assert [*InboundStatus] == [
        "received", "processing", "retry", "done", "quarantined", "dropped"
    ]  # fmt: skip
    assert [*TicketStatus] == ["new", "open", "pending", "resolved", "closed"]
    assert [*OutboxStatus] == ["pending", "sent", "failed", "suppressed", "dropped", "bounced"]
    assert [*ChallengeOutcome] == ["confirmed", "refused", "expired"]
    assert f"{TicketStatus.OPEN}" == "open" and str(InboundStatus.DONE) == "done"


def test_status_command_lists_what_operators_may_set() -> None:
    assert STATUSES == ("open", "pending", "resolved", "closed")
    block = read("#status new\n\nhello", queues=frozenset(), operators={})
    assert block.errors == ("#status new: status must be one of open, pending, resolved, closed",)
