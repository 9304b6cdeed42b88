"""A full disk is told apart from every other storage failure: SQLite's SQLITE_FULL,
PostgreSQL's SQLSTATE 53100 and the OS's ENOSPC/EDQUOT become ``StorageFull``
(a ``TemporaryError``), anything else stays what it was."""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
from pathlib import Path

import psycopg.errors
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from mailgate.errors import DatabaseUnavailable, StorageFull, TemporaryError, out_of_space
from mailgate.ingest import smtp
from mailgate.replies.sender import MaildirTransport
from mailgate.store.db import translate_db_errors


def sqlite_full_error(tmp_path: Path) -> sqlite3.OperationalError:
    """A genuine SQLITE_FULL: a database capped at its current size asked to grow."""
    conn = sqlite3.connect(tmp_path / "capped.db", isolation_level=None)
    try:
        conn.execute("CREATE TABLE t (x BLOB)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={pages}")
        with pytest.raises(sqlite3.OperationalError) as caught:
            conn.execute("INSERT INTO t VALUES (?)", (b"x" * 50_000,))
        return caught.value
    finally:
        conn.close()


def test_sqlite_full_is_out_of_space(tmp_path: Path) -> None:
    err = sqlite_full_error(tmp_path)
    assert "full" in str(err)
    assert out_of_space(err)


def test_other_sqlite_errors_are_not_out_of_space() -> None:
    conn = sqlite3.connect(":memory:")
    with pytest.raises(sqlite3.OperationalError) as caught:
        conn.execute("SELECT * FROM missing")
    conn.close()
    assert not out_of_space(caught.value)
    assert not out_of_space(sqlite3.OperationalError("database is locked"))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_enospc_and_edquot_are_out_of_space(code: int) -> None:
    assert out_of_space(OSError(code, os.strerror(code)))


def test_other_os_errors_are_not_out_of_space() -> None:
    assert not out_of_space(OSError(errno.EACCES, "Permission denied"))
    assert not out_of_space(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    assert not out_of_space(None)


def test_postgresql_disk_full_is_out_of_space() -> None:
    assert out_of_space(psycopg.errors.DiskFull("could not extend file"))
    assert not out_of_space(psycopg.errors.AdminShutdown("terminating connection"))


def test_translate_db_errors_raises_storage_full_for_a_full_database(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/t.db")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x BLOB)"))
        with pytest.raises(StorageFull) as caught, translate_db_errors(), engine.begin() as conn:
            pages = conn.execute(text("PRAGMA page_count")).scalar_one()
            conn.execute(text(f"PRAGMA max_page_count={pages}"))
            conn.execute(text("INSERT INTO t VALUES (:x)"), {"x": b"x" * 50_000})
    finally:
        engine.dispose()
    assert isinstance(caught.value, TemporaryError)
    assert isinstance(caught.value.__cause__, OperationalError)


def test_translate_db_errors_keeps_database_unavailable_for_other_failures() -> None:
    locked = OperationalError("BEGIN", None, sqlite3.OperationalError("database is locked"))
    with pytest.raises(DatabaseUnavailable), translate_db_errors():
        raise locked


def test_the_listeners_answer_452_4_3_1_for_storage_full() -> None:
    # RFC 5321 §4.2.2: 452 "insufficient system storage"; RFC 3463: 4.3.1 "mail system full".
    assert smtp.STORAGE_FULL.startswith("452 4.3.1 ")
    assert smtp.TEMPFAIL.startswith("451 4.3.0 ")


def test_maildir_on_a_full_disk_raises_storage_full_and_leaves_no_partial_file(
    tmp_path: Path,
) -> None:
    # /dev/full answers every write with ENOSPC: the temporary file is pointed at it.
    box = MaildirTransport(tmp_path / "sent")
    key = "0000000001.ack"
    with box.connect():
        pass
    partial = tmp_path / "sent" / "tmp" / f"{key}.{socket.gethostname()}"
    partial.symlink_to("/dev/full")
    with pytest.raises(StorageFull), box.connect() as conn:
        conn.send("", ["jan@customer.example"], b"Subject: x\r\n\r\n" + b"y" * 10_000, key)
    assert not partial.is_symlink() and not partial.exists()
    assert list((tmp_path / "sent" / "new").iterdir()) == []
    # Space back: the retry writes the message.
    with box.connect() as conn:
        conn.send("", ["jan@customer.example"], b"Subject: x\r\n\r\nhello\r\n", key)
    assert len(list((tmp_path / "sent" / "new").iterdir())) == 1


def test_maildir_that_cannot_be_created_is_a_temporary_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(TemporaryError) as caught, MaildirTransport(blocker / "sent").connect():
        pass
    assert not isinstance(caught.value, StorageFull)


def test_a_failed_savepoint_rollback_after_a_full_disk_is_still_storage_full(
    tmp_path: Path,
) -> None:
    # SQLite rolls the whole transaction back on SQLITE_FULL; the savepoint's own
    # rollback then fails, and that second error is the one that surfaces.
    full = OperationalError("INSERT", None, sqlite_full_error(tmp_path))
    gone = sqlite3.OperationalError("no such savepoint: sa_savepoint_1")
    with pytest.raises(StorageFull), translate_db_errors():
        try:
            raise full
        except OperationalError:
            raise OperationalError("ROLLBACK TO SAVEPOINT", None, gone) from None
