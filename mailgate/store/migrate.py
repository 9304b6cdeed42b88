"""Schema migrations: ``mailgate db upgrade``, and the one test every other command runs
first — does this database hold the schema this release was written for?

A database that is missing, empty or behind is refused with one line naming
``mailgate db upgrade``; only that command creates an SQLite file (or its folder).
"""

from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from alembic import command
from mailgate.config.shipped import migrations_dir
from mailgate.store.revisions import applied_revisions, sqlite_file

UPGRADE = "run `mailgate db upgrade`"

__all__ = [
    "UPGRADE",
    "alembic_config",
    "applied_revisions",
    "one_line",
    "refusal",
    "schema_problem",
    "sqlite_file",
    "upgrade",
]


def alembic_config() -> Config:
    """Alembic's configuration built in code: the scripts shipped with this install,
    found from any working directory (no alembic.ini is read)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    path = sqlite_file(engine)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def refusal(engine: Engine) -> str | None:
    """Why no command but ``db upgrade`` may use this database (unreachable, missing,
    not migrated), in one line; None when it may."""
    try:
        return schema_problem(engine)
    except SQLAlchemyError as exc:
        return f"database unavailable: {one_line(exc)}"


def one_line(exc: BaseException) -> str:
    """The first line of a driver's error, without SQLAlchemy's background link."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def schema_problem(engine: Engine) -> str | None:
    """None when the database is at this release's newest revision, else what is wrong
    (one sentence naming the command that fixes it).

    A missing SQLite file is reported without connecting, which would create it.
    Connection errors propagate: the caller says "unavailable", not "migrate".
    """
    path = sqlite_file(engine)
    if path is not None and not path.is_file():
        return f"the database {path} does not exist: {UPGRADE} first"
    with engine.connect() as conn:
        current = applied_revisions(conn)
    scripts = ScriptDirectory.from_config(alembic_config())
    heads = set(scripts.get_heads())
    if not heads:
        return f"no migration scripts found in {migrations_dir()}: the install is incomplete"
    if current == heads:
        return None
    where = engine.url.render_as_string(hide_password=True)
    if not current:
        return f"the database {where} has no mailgate schema: {UPGRADE} first"
    try:
        for revision in current:
            scripts.get_revision(revision)
    except CommandError:
        return (
            f"the database {where} is at schema revision {', '.join(sorted(current))}, "
            "which this release does not know (was it migrated by a newer mailgate?)"
        )
    return (
        f"the database {where} is at schema revision {', '.join(sorted(current))}, this "
        f"release needs {', '.join(sorted(heads))}: {UPGRADE}"
    )
