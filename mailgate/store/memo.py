"""Values read once per session, not once per message.

The pipeline applies a whole batch of messages in one session (one transaction, a
savepoint each).  Some reads give the same answer for every message of the batch — the
operator roster, whether the circuit breaker is open, how much automatic mail the
breaker's window already holds — and repeating them per message was a large share of
the per-message SQL.  ``remember`` keeps such a value in ``Session.info`` for the life
of that session; whoever changes the underlying rows in the same session calls
``forget`` (or updates the remembered value) so later readers see the change.
Sessions are short here (one batch, one CLI command), so a value never outlives the
transaction it was read in by more than that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from sqlalchemy.orm import Session

T = TypeVar("T")
_KEY = "mailgate.memo"


def remember(session: Session, name: str, load: Callable[[], T]) -> T:
    """The value remembered under ``name`` in this session, loading it the first time."""
    store: dict[str, Any] = session.info.setdefault(_KEY, {})
    if name not in store:
        store[name] = load()
    return cast(T, store[name])


def forget(session: Session, name: str) -> None:
    """Drop a remembered value: the next ``remember`` reads it again."""
    store: dict[str, Any] = session.info.get(_KEY, {})
    store.pop(name, None)
