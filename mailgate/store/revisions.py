"""Which schema revision a database holds and which one this release needs, without
Alembic.

``mailgate serve`` checks the schema on every start, and a restart after a crash is
what an MTA waits on: importing Alembic and loading every migration script costs a
fifth of a second there.  The revision ids are read here from the scripts' own
``revision = …`` and ``down_revision = …`` lines (the newest: the revisions no other
script names as its predecessor).  When the database holds exactly those, the start
goes on; anything else is worded by ``store.migrate.schema_problem``, with Alembic.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text

from mailgate.config.shipped import migrations_dir

VERSION_TABLE = "alembic_version"  # alembic's default, which env.py keeps
_ASSIGNED = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+?)\s*$", re.MULTILINE)


def sqlite_file(engine: Engine) -> Path | None:
    """The file of an SQLite database (None for PostgreSQL or an in-memory database)."""
    name = engine.url.database
    if engine.url.get_backend_name() != "sqlite" or not name or name == ":memory:":
        return None
    return Path(name)


def applied_revisions(conn: Connection) -> set[str]:
    """The revisions recorded in the database (read directly: alembic's own
    MigrationContext would log two lines on every command)."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return set()
    return set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def shipped_heads(directory: Path | None = None) -> set[str]:
    """The newest revisions of the migration scripts shipped with this install."""
    revisions: set[str] = set()
    earlier: set[str] = set()
    for script in sorted((directory or migrations_dir() / "versions").glob("*.py")):
        found = dict(_ASSIGNED.findall(script.read_text(encoding="utf-8")))
        if "revision" not in found:
            continue
        revisions.add(ast.literal_eval(found["revision"]))
        down = ast.literal_eval(found.get("down_revision", "None"))
        earlier.update([down] if isinstance(down, str) else down or ())
    return revisions - earlier


def is_current(engine: Engine) -> bool:
    """Whether the database exists and holds exactly this release's newest revision.
    A missing SQLite file is "no" without connecting, which would create it."""
    path = sqlite_file(engine)
    if path is not None and not path.is_file():
        return False
    heads = shipped_heads()
    with engine.connect() as conn:
        return bool(heads) and applied_revisions(conn) == heads
