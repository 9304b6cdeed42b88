"""The message a log line is about: its trace id and, once known, its ticket number.

The trace id is the inbound message's id (what the MTA was told: "queued as 17").  Code
that handles one message enters ``about(trace)``; once the message's ticket is known,
``ticket_known(number)`` adds it.  ``Fields``, a filter on the configured log handler
(and on the facts workers' queue handler), copies both onto every record emitted
meanwhile, so a line about a message carries them even when the code that logged it —
a gate, a library — knows nothing of messages.  A record that names its own
(``extra={"trace": …}``) keeps them.  Context variables follow threads and asyncio
tasks, so concurrent messages never lend each other their ids.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_trace: ContextVar[int | None] = ContextVar("mailgate_trace", default=None)
_ticket: ContextVar[int | None] = ContextVar("mailgate_ticket", default=None)


@contextmanager
def about(trace: int | None, ticket: int | None = None) -> Iterator[None]:
    """Log lines emitted inside are about message ``trace`` (and ticket ``ticket``)."""
    trace_token = _trace.set(trace)
    ticket_token = _ticket.set(ticket)
    try:
        yield
    finally:
        _ticket.reset(ticket_token)
        _trace.reset(trace_token)


def ticket_known(number: int) -> None:
    """The message being handled belongs to ticket ``number`` (until ``about`` ends)."""
    if _trace.get() is not None:
        _ticket.set(number)


class Fields(logging.Filter):
    """Puts the current trace id and ticket number on records that carry none."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "trace", None) is None:
            record.trace = _trace.get()
        if getattr(record, "ticket", None) is None:
            record.ticket = _ticket.get()
        return True
