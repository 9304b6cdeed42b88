"""Who reads one folder: on PostgreSQL, a session-level advisory lock per folder.

The lock saves duplicate work only (two processes reading one folder would each find
the other's messages already stored); correctness rests on the unique ``source_ref``.
When the process dies its connection goes, and the lock with it, so another process
takes over.  On SQLite a single mailgate process is assumed and the lease always holds.
"""

from __future__ import annotations

import contextlib
import hashlib

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import NullPool

from mailgate.errors import TemporaryError
from mailgate.ingest.context import ImapContext
from mailgate.store.db import translate_db_errors


class LeaseLost(TemporaryError):
    """The advisory-lock connection went away; another process may own the folder now."""


class FolderLease:
    """Who reads one folder: a PostgreSQL advisory lock, held on its own connection.

    The connection is outside the engine's pool (a poller holds it for hours) and in
    autocommit mode, so it never sits idle inside a transaction.
    """

    def __init__(self, rt: ImapContext, account: str, folder: str) -> None:
        self.enabled = rt.engine.dialect.name == "postgresql"
        digest = hashlib.sha256(f"mailgate-imap\0{account}\0{folder}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self._url = rt.engine.url
        self._timeout = rt.settings.database.connect_timeout
        self._conn: Connection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None or not self.enabled

    def acquire(self) -> bool:
        if self.held:
            return True
        engine = create_engine(
            self._url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": self._timeout},
        )
        with translate_db_errors():
            conn = engine.connect()
            try:
                got = conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})
            except BaseException:
                conn.close()
                raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def check(self) -> None:
        """Raise ``LeaseLost`` when the lock's connection is gone (and the lock with it)."""
        if self._conn is None:
            if self.enabled:
                raise LeaseLost("the folder lease is not held")
            return
        try:
            self._conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means the lock is gone with its session
            self.release()
            raise LeaseLost(f"folder lease lost: {exc}") from exc

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()  # closing the session releases its advisory locks
            self._conn = None
