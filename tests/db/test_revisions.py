"""``store.revisions`` reads the schema's newest revision without Alembic, for the
daemon's start; it must agree with Alembic's own reading of the same scripts, and say
"current" only for a database that holds exactly that revision."""

from __future__ import annotations

from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import text

from mailgate.config import DatabaseSettings
from mailgate.store import migrate, revisions
from mailgate.store.db import make_engine


def test_the_newest_revision_is_alembics(tmp_path: Path) -> None:
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    assert revisions.shipped_heads() == set(scripts.get_heads())
    # A branch that two scripts merge again has one head; a dangling one adds a head.
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "a.py").write_text('revision = "a"\ndown_revision = None\n')
    (versions / "b.py").write_text('revision: str = "b"\ndown_revision = "a"\n')
    (versions / "c.py").write_text('revision = "c"\ndown_revision = "a"\n')
    (versions / "m.py").write_text('revision = "m"\ndown_revision = ("b", "c")\n')
    assert revisions.shipped_heads(versions) == {"m"}
    (versions / "d.py").write_text("revision = 'd'\ndown_revision = 'm'\n")
    (versions / "e.py").write_text("revision = 'e'\ndown_revision = 'm'\n")
    assert revisions.shipped_heads(versions) == {"d", "e"}


def test_current_only_at_the_newest_revision_and_never_creates_a_file(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    engine = make_engine(DatabaseSettings(url=f"sqlite:///{path}"))
    assert not revisions.is_current(engine)
    assert not path.exists()
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    [head] = scripts.get_heads()
    previous = scripts.get_revision(head).down_revision
    assert isinstance(previous, str)
    migrate.upgrade(engine, previous)
    assert not revisions.is_current(engine)
    migrate.upgrade(engine)
    assert revisions.is_current(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'from-a-newer-release'"))
    assert not revisions.is_current(engine)
    engine.dispose()
