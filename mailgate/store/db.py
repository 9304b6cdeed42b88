"""Engines and sessions: the one place that knows SQLite from PostgreSQL.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` so a commit
is on disk before we answer 250, a busy timeout instead of instant "database is
locked", and ``BEGIN IMMEDIATE`` for every transaction so two writers queue on the
lock rather than deadlock when a reader upgrades.  PostgreSQL gets a connect timeout
so an unreachable server turns into a temporary failure within seconds.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker

from mailgate.config import DatabaseSettings
from mailgate.errors import DatabaseUnavailable, StorageFull, out_of_space


def make_engine(settings: DatabaseSettings) -> Engine:
    url = settings.url
    if url.startswith("sqlite"):
        return _sqlite_engine(url, settings.busy_timeout_ms)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        pool_timeout=settings.connect_timeout,
        connect_args={"connect_timeout": settings.connect_timeout},
    )


WAL_SIZE_LIMIT = 16 * 1024 * 1024  # bytes of write-ahead log kept after a checkpoint


def _sqlite_engine(url: str, busy_timeout_ms: int) -> Engine:
    # The file (and its folder) is made by `mailgate db upgrade` (store.migrate) only:
    # every other command checks that it exists before it connects.
    engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" hook below.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        # A burst leaves a large write-ahead log behind, and SQLite never shrinks it
        # by itself; this truncates it after the next checkpoint that empties it, so
        # the space comes back (the disk-full scenario found a WAL holding 16 MB for
        # 6 MB of data).
        cur.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    # SQLite has one writer at a time.  Threads of this process queue on a Python lock
    # (woken at once) rather than on SQLite's busy handler, which sleeps in steps of up
    # to 100 ms; other processes (the CLI) still wait through busy_timeout.
    writer = threading.Lock()
    held = "mailgate_writer_lock"

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if not writer.acquire(timeout=busy_timeout_ms / 1000):
            raise exc.OperationalError(
                "BEGIN IMMEDIATE",
                None,
                sqlite3.OperationalError("database is locked (writer queue)"),
            )
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            writer.release()
            raise
        conn.info[held] = True

    def _release(conn: Any) -> None:
        if conn.info.pop(held, False):
            writer.release()

    event.listen(engine, "commit", _release)
    event.listen(engine, "rollback", _release)

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        # A connection returned mid-transaction (an error path) must not keep the lock.
        if record.info.pop(held, False):
            writer.release()

    return engine


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _full_disk(err: BaseException) -> BaseException | None:
    """The "disk full" DB-API error behind ``err``, if there is one.

    SQLite answers SQLITE_FULL by rolling the whole transaction back, so the savepoint
    rollback that follows fails with "no such savepoint" and hides the cause: the
    chain of errors being handled is searched, not only the last one.
    """
    seen: BaseException | None = err
    while seen is not None:
        orig = getattr(seen, "orig", None)
        if out_of_space(orig):
            return orig
        seen = seen.__context__
    return None


@contextmanager
def translate_db_errors() -> Iterator[None]:
    """Turn "the database is not there right now" into ``DatabaseUnavailable``, and
    "the database has no room to write" into ``StorageFull``.

    Integrity errors are not translated: they are bugs or races the caller handles.
    """
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError, exc.TimeoutError) as err:
        full = _full_disk(err)
        if full is not None:
            raise StorageFull(f"database storage full: {full}") from err
        raise DatabaseUnavailable(f"database unavailable: {getattr(err, 'orig', err)}") from err
    except exc.DBAPIError as err:
        if err.connection_invalidated:
            raise DatabaseUnavailable(f"database connection lost: {err.orig}") from err
        raise
