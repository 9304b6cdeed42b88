"""The pipe adapter: ``mailgate ingest`` as an MTA's pipe transport runs it.

The MTA hands over one message on standard input with the envelope as ``--from`` and
``--to`` and reads only the exit code, so every outcome maps to sysexits(3): 0 stored
(after the commit), 65 (EX_DATAERR) the input itself is unusable and retrying cannot
help, 75 (EX_TEMPFAIL) try again later.  Anything unexpected — our own bug included —
is 75 too: the MTA keeps the message queued instead of bouncing it.  Batch imports
(``ingest.archive``) run under the same mapping.

It needs only the database: no renderer, no transport, no worker processes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import BinaryIO

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mailgate.config import DatabaseSettings
from mailgate.errors import PermanentError, TemporaryError
from mailgate.ingest.accept import Envelope, accept
from mailgate.store.db import make_engine, make_sessions

EX_OK = 0
EX_DATAERR = 65
EX_TEMPFAIL = 75


def run(
    database: DatabaseSettings,
    envelope: Envelope,
    *,
    acknowledge: bool = True,
    stdin: BinaryIO | None = None,
) -> int:
    """Store the message on ``stdin`` (default: this process's) and return the exit code."""

    def store(sessions: sessionmaker[Session]) -> None:
        raw = (stdin or sys.stdin.buffer).read()
        result = accept(sessions, raw, envelope, "pipe", acknowledge=acknowledge)
        _say(f"stored as inbound message {result.inbound_id}")

    return guarded(database, store)


def guarded(database: DatabaseSettings, work: Callable[[sessionmaker[Session]], None]) -> int:
    """Run ``work`` against the database and turn how it ended into a sysexits code.

    Each failure is explained on standard error, which the MTA logs or puts in a bounce.
    """
    try:
        engine = make_engine(database)
    except SQLAlchemyError as exc:
        _say(f"mailgate: database unavailable: {exc}")
        return EX_TEMPFAIL
    try:
        work(make_sessions(engine))
    except PermanentError as exc:
        _say(f"mailgate: refused: {exc}")
        return EX_DATAERR
    except TemporaryError as exc:
        _say(f"mailgate: temporary failure, try again later: {exc}")
        return EX_TEMPFAIL
    except Exception as exc:  # noqa: BLE001 -- an MTA must retry, not bounce, on our bugs
        _say(f"mailgate: unexpected failure, try again later: {exc!r}")
        return EX_TEMPFAIL
    finally:
        engine.dispose()
    return EX_OK


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
