"""Leadership for once-per-cluster jobs: one holder on PostgreSQL, taken over when the
holder's connection goes; SQLite (one process) always leads."""

from __future__ import annotations

from mailgate.config import DatabaseSettings
from mailgate.daemon.leader import Leadership, lock_key
from mailgate.store.db import make_engine


def test_one_leader_and_takeover(db_url: str) -> None:
    first_engine = make_engine(DatabaseSettings(url=db_url))
    second_engine = make_engine(DatabaseSettings(url=db_url))
    first, second = (
        Leadership(first_engine, "test:leader"),
        Leadership(second_engine, "test:leader"),
    )
    try:
        assert first.check()
        if db_url.startswith("sqlite"):
            assert second.check()  # one process per SQLite database: nothing to elect
            return
        assert not second.check()
        assert first.check()  # still the leader on the next round
        first.release()  # what the death of its process does to the connection
        assert second.check()
        assert not first.check()
    finally:
        first.release()
        second.release()
        first_engine.dispose()
        second_engine.dispose()


def test_lock_key_is_stable_and_signed_64_bit() -> None:
    assert lock_key("mailgate:scheduled-jobs") == lock_key("mailgate:scheduled-jobs")
    assert -(2**63) <= lock_key("x") < 2**63
