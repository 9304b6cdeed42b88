"""Alembic environment: runs migrations on the connection mailgate hands over.

``mailgate db upgrade`` (``mailgate.store.migrate.upgrade``) passes an open connection
in ``config.attributes["connection"]``; the plain ``alembic`` command line falls back to
the URL from mailgate's own settings (``MAILGATE_CONFIG`` / ``MAILGATE_DATABASE__URL``).
"""

from __future__ import annotations

import os
from typing import Any, Literal

from sqlalchemy import Connection

from alembic import context
from mailgate import config as mg_config
from mailgate.store.db import make_engine
from mailgate.store.models import Base, UTCDateTime

target_metadata = Base.metadata


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    # Migrations must not import mailgate's models (they are frozen history), so our
    # UTCDateTime decorator is written out as the plain column type it wraps.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    settings = mg_config.load(os.environ.get("MAILGATE_CONFIG"))
    engine = make_engine(settings.database)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
