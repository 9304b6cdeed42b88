"""Fixtures: a migrated database on every backend under test, settings built in code,
a runtime with a fake clock, and the relay sink.

SQLite always runs.  PostgreSQL runs whenever MAILGATE_TEST_DATABASE_URL names a
server (``.ci/run`` sets it and fails if the server is unreachable): the suite creates a
throw-away database there, migrates it once, and empties it between tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mailgate import config
from mailgate.config import Settings
from mailgate.daemon import wiring
from mailgate.daemon.runtime import Runtime
from mailgate.store.db import make_engine
from mailgate.store.migrate import upgrade
from mailgate.store.models import Base
from tests.support import FakeClock, FakeDns, RelaySink, start_sink

PG_URL = os.environ.get("MAILGATE_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def pytest_configure(config: pytest.Config) -> None:
    # The PostgreSQL half of the suite (and the tests marked "needs PostgreSQL") must
    # never vanish from CI unnoticed: there, a missing URL stops the run at once.
    if os.environ.get("CI") and not PG_URL:
        raise pytest.UsageError("CI=1 but MAILGATE_TEST_DATABASE_URL is not set (.ci/run sets it)")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    admin = make_url(PG_URL).set(drivername="postgresql+psycopg")
    name = f"mailgate_test_{uuid.uuid4().hex[:10]}"
    admin_engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(config.DatabaseSettings(url=url))
    upgrade(engine)
    engine.dispose()
    yield url
    with admin_engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin_engine.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/mailgate.db"
        engine = make_engine(config.DatabaseSettings(url=url))
        upgrade(engine)
        engine.dispose()
        yield url
        return
    url = request.getfixturevalue("pg_database")
    yield url
    engine = make_engine(config.DatabaseSettings(url=url))
    with engine.begin() as conn:
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        conn.execute(text("INSERT INTO counter (name, value) VALUES ('ticket', 0)"))
    engine.dispose()


@pytest.fixture
def sink() -> Iterator[RelaySink]:
    relay, controller, port = start_sink()
    relay.port = port
    yield relay
    controller.stop()


def make_settings(
    db_url: str, tmp_path: Any, environ: dict[str, str] | None = None, **sections: Any
) -> Settings:
    """Settings for a test; a section given as a list is an array of tables ([[imap]])."""
    data: dict[str, Any] = {
        "database": {"url": db_url},
        "smtp": {"listen": "127.0.0.1:0"},
        "lmtp": {"listen": "127.0.0.1:0"},
        "http": {"listen": ""},
        # Relays in tests are loopback sinks without TLS.
        "outbound": {
            "maildir": str(tmp_path / "sent"),
            "retry_base_seconds": 60,
            "tls": "insecure",
        },
        # In-process facts stage: deterministic and quick; the worker pool has its own test.
        "processing": {"retry_base_seconds": 30, "sweep_seconds": 3600, "parse_workers": 0},
    }
    for name, values in sections.items():
        if isinstance(values, list):
            data[name] = values
        else:
            data.setdefault(name, {}).update(values)
    return config.build(data, environ=environ or {})


def make_runtime(
    settings: Settings,
    clock: Any = None,
    dns: Any = None,
    environ: dict[str, str] | None = None,
) -> Runtime:
    """A runtime that never touches real DNS (a fake resolver unless one is given) and
    reads its secrets from ``environ`` only, never the process's."""
    kwargs: dict[str, Any] = {"environ": environ or {}}
    if clock is not None:
        kwargs["clock"] = clock
    rt = wiring.build(settings, **kwargs)
    rt.dns = dns if dns is not None else FakeDns()
    return rt


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rt(db_url: str, tmp_path: Any, clock: FakeClock) -> Iterator[Runtime]:
    runtime = make_runtime(make_settings(db_url, tmp_path), clock)
    yield runtime
    runtime.close()
