"""The install's own random keys, kept in the database.

The threading key signs reply addresses and Message-IDs (``mailgate.replies.tokens``).  An
admin may supply it through the environment (``threading.secret_env``); otherwise it is
made here once, from the OS's random source, the first time a mail needs it.  Keeping
it in the database rather than a file means every instance sharing the database uses
the same key, and a restore from backup keeps old reply addresses working.  Whoever can
read the database can forge tokens — and could read every ticket anyway.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mailgate.store.models import InstallKey

KEY_BYTES = 32


def read(session: Session, name: str) -> bytes | None:
    value = session.scalar(select(InstallKey.value).where(InstallKey.name == name))
    return None if value is None else bytes(value)


def get_or_create(session: Session, name: str, now: datetime) -> bytes:
    """The key called ``name``, made on first use; concurrent first uses agree."""
    value = read(session, name)
    if value is not None:
        return value
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(InstallKey)
        .values(name=name, value=secrets.token_bytes(KEY_BYTES), created_at=now)
        .on_conflict_do_nothing()
    )
    return bytes(session.scalars(select(InstallKey.value).where(InstallKey.name == name)).one())
