"""How far the reader has got in one folder: the ``imap_cursor`` row.

The cursor names the folder's UIDVALIDITY, the highest UID read so far (incremental
passes look above it) and the baseline: the highest UID present when the folder was
first read, so mail that was already there is imported without an acknowledgement
unless the account asks for one.  The cursor saves work but decides nothing: a full
pass looks at every UID, and the store's unique ``source_ref`` decides what is new.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from mailgate.store.db import translate_db_errors
from mailgate.store.models import ImapCursor


@dataclass(frozen=True, slots=True)
class Cursor:
    uidvalidity: int
    last_uid: int
    baseline_uid: int


def load(sessions: sessionmaker[Session], account: str, folder: str) -> Cursor | None:
    """The folder's cursor, or None before its first read."""
    with translate_db_errors(), sessions() as session:
        row = session.get(ImapCursor, (account, folder))
        if row is None:
            return None
        return Cursor(row.uidvalidity, row.last_uid, row.baseline_uid)


def save(
    sessions: sessionmaker[Session], account: str, folder: str, cursor: Cursor, now: datetime
) -> None:
    """Write the folder's cursor (in a transaction of its own)."""
    with translate_db_errors(), sessions.begin() as session:
        row = session.get(ImapCursor, (account, folder))
        if row is None:
            row = ImapCursor(account=account, folder=folder)
            session.add(row)
        row.uidvalidity = cursor.uidvalidity
        row.last_uid = cursor.last_uid
        row.baseline_uid = cursor.baseline_uid
        row.updated_at = now
