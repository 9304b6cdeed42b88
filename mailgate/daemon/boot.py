"""``mailgate serve``: listen first, then open the store, then bring up the rest.

A restarted daemon is what an MTA waits on, and most of a start is importing modules
(SQLAlchemy and Alembic, the pipeline, the web app, the renderers).  So ``serve``
starts in this order:

1. The settings (a bad config exits 78, listing every problem) and logging.  An SQLite
   file that does not exist is refused here (exit 75, one line naming
   ``mailgate db upgrade``), before any socket is opened or anything created.
2. The SMTP and LMTP listeners, with only what taking mail needs
   (``daemon.listen``): a port that is taken exits 69 with one line.  From here on
   the daemon greets; the event loop keeps answering while the rest loads in threads.
3. In a thread: the store's modules, the engine and the schema check
   (``store.revisions``, without Alembic; an unreachable or unmigrated database exits
   75 with one line); then the group committer starts.
   A session that reached DATA before this waits for its commit — no 250 before the
   message is stored, as always.
4. In a thread: the daemon's modules and the runtime (``daemon.wiring``); then, on the
   loop, HTTP, the IMAP pollers, the worker, the outbox, webhooks and the scheduler
   (``daemon.app``).  ``/readyz`` answers 503 "starting" until all of them are up; the
   worker's first sweep processes what came in meanwhile.  The facts workers start
   with the first batch (``pipeline.facts``).

SIGTERM or SIGINT during the start is kept and acted on once the daemon is up: it then
drains and exits 0, as it would later.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from mailgate.clock import utcnow
from mailgate.config import Settings, load
from mailgate.daemon import logs
from mailgate.daemon.listen import Early, ListenError, Listeners
from mailgate.daemon.metrics import Metrics
from mailgate.errors import ConfigError
from mailgate.ingest.committer import GroupCommitter

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from mailgate.daemon.runtime import Runtime

log = logging.getLogger(__name__)

# sysexits(3), as the CLI uses them (cli.root).
EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75
EX_CONFIG = 78


class Refused(Exception):
    """The start cannot go on: one line for standard error and the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def main(config_path: str | None) -> int:
    """Run the daemon until it is stopped; the exit status."""
    try:
        settings = load(config_path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EX_CONFIG
    logs.configure(settings.log)
    try:
        missing = missing_sqlite_file(settings.database.url)
        if missing is not None:
            raise Refused(
                f"the database {missing} does not exist: run `mailgate db upgrade` first",
                EX_TEMPFAIL,
            )
        asyncio.run(_serve(settings, config_path))
    except ListenError as exc:
        return _fail(str(exc), EX_UNAVAILABLE)
    except Refused as exc:
        return _fail(str(exc), exc.status)
    return 0


def _fail(message: str, status: int) -> int:
    print(f"mailgate: {message}", file=sys.stderr)
    return status


def missing_sqlite_file(url: str) -> Path | None:
    """The file an SQLite URL names, when it does not exist (None otherwise, and for
    anything else).  Checked before the listeners open, without SQLAlchemy; the
    schema check after them (``store.migrate.refusal``) is the complete one."""
    parts = urlsplit(url)
    if parts.scheme.partition("+")[0] != "sqlite" or not parts.path.startswith("/"):
        return None
    name = parts.path[1:]
    if not name or name == ":memory:":
        return None
    path = Path(name)
    return None if path.is_file() else path


async def _serve(settings: Settings, config_path: str | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics = Metrics()
    listeners = Listeners(Early.build(settings, metrics, os.environ), GroupCommitter(utcnow))
    rt: Runtime | None = None
    try:
        await listeners.open()
        for name, port in listeners.ports.items():
            log.info("%s listening on port %s; the rest is starting behind it", name, port)
        engine = await asyncio.to_thread(_open_store, settings, listeners.committer)
        rt = await asyncio.to_thread(_runtime, settings, engine, metrics)
        from mailgate.daemon import app  # already loaded by ``_runtime``, off the loop

        daemon = app.Daemon(rt, listeners=listeners)
        await app.run(daemon, stop, reread=lambda: load(config_path))
    finally:
        listeners.close()
        if rt is not None:
            rt.close()


def _open_store(settings: Settings, committer: GroupCommitter) -> Engine:
    """The engine, once the database is known to hold this release's schema; the
    committer stores from then on."""
    from sqlalchemy.exc import SQLAlchemyError

    from mailgate.store import revisions
    from mailgate.store.db import make_engine, make_sessions

    engine = make_engine(settings.database)
    try:
        current = revisions.is_current(engine)
    except SQLAlchemyError:
        current = False
    if not current:
        from mailgate.store import migrate  # Alembic, only to say what is wrong

        problem = migrate.refusal(engine)
        if problem is not None:
            engine.dispose()
            raise Refused(problem, EX_TEMPFAIL)
    committer.start(make_sessions(engine))
    return engine


def _runtime(settings: Settings, engine: Engine, metrics: Metrics) -> Runtime:
    from mailgate.daemon import wiring

    # The daemon's modules load here, in this thread, while the loop keeps greeting.
    importlib.import_module("mailgate.daemon.app")
    try:
        return wiring.build(settings, engine=engine, metrics=metrics)
    except ConfigError as exc:
        raise Refused(str(exc), EX_CONFIG) from exc
