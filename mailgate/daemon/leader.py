"""Leadership: which of several mailgate processes runs the once-per-cluster jobs.

Processing and sending are shared safely by any number of processes (claims with
``FOR UPDATE SKIP LOCKED`` and leases).  Scheduled jobs that send mail on a timer —
challenge expiry and reminders, SLA escalation, closing resolved tickets — must run in
one place, or every instance would send the same reminder.  On PostgreSQL the leader
is whoever holds a session-level advisory lock on a connection kept open for it; when
that process dies its connection closes, the lock is freed, and the next instance to
ask takes over.  SQLite means one process, which is always the leader.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Leadership:
    def __init__(self, engine: Engine, name: str = "mailgate:scheduled-jobs") -> None:
        self.engine = engine
        self.key = lock_key(name)
        self._conn: Connection | None = None

    def check(self) -> bool:
        """Whether this process leads now; tries to become leader if nobody does."""
        if self.engine.dialect.name != "postgresql":
            return True
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                self._conn.commit()
                return True
            except DBAPIError:
                log.warning("leadership lost with the database connection")
                self.release()
        conn = self.engine.connect()
        try:
            held = bool(
                conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
            )
            conn.commit()  # the lock belongs to the session, not to this transaction
        except DBAPIError:
            conn.close()
            raise
        if not held:
            conn.close()
            return False
        log.info("this process now runs the scheduled jobs")
        self._conn = conn
        return True

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(DBAPIError):
                # invalidate() really closes the session (close() would only hand it
                # back to the pool, still holding the lock); that frees the lock.
                self._conn.invalidate()
                self._conn.close()
            self._conn = None
