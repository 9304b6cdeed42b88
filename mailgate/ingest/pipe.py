"""The pipe adapter: ``mailgate ingest`` as an MTA's pipe transport runs it.

The MTA hands over one message on standard input with the envelope as ``--from`` and
``--to`` and reads only the exit code, so every outcome maps to sysexits(3): 0 stored
(after the commit), 64 (EX_USAGE) no ``--to`` was given, 65 (EX_DATAERR) the input
itself is unusable and retrying cannot help, 67 (EX_NOUSER) a recipient is not a
helpdesk address — checked as the SMTP listener checks RCPT, before anything is
stored — and 75 (EX_TEMPFAIL) try again later: the database is unreachable or not
migrated yet.  Anything unexpected — our own bug included — is 75 too: the MTA keeps
the message queued instead of bouncing it.  Batch imports (``ingest.archive``) run
under the same mapping.

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
from mailgate.store.migrate import schema_problem

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_NOUSER = 67
EX_TEMPFAIL = 75


def run(
    database: DatabaseSettings,
    envelope: Envelope,
    recipient_known: Callable[[str], bool],
    *,
    acknowledge: bool = True,
    stdin: BinaryIO | None = None,
) -> int:
    """Store the message on ``stdin`` (default: this process's) and return the exit code.

    ``recipient_known`` is the listeners' RCPT test: a helpdesk address (or one of our
    VERP return paths).  The message is read in full before any refusal, so the MTA
    sees an exit code rather than a broken pipe.
    """
    raw = (stdin or sys.stdin.buffer).read()
    if not envelope.rcpt_to:
        _say("mailgate: no recipient: give --to ADDRESS (the envelope recipient)")
        return EX_USAGE
    unknown = [r for r in envelope.rcpt_to if not recipient_known(r)]
    if unknown:
        _say(f"mailgate: {', '.join(unknown)}: no such helpdesk address ([helpdesk.queues])")
        return EX_NOUSER

    def store(sessions: sessionmaker[Session]) -> None:
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
        problem = schema_problem(engine)
        if problem is not None:
            _say(f"mailgate: {problem}")
            return EX_TEMPFAIL
        work(make_sessions(engine))
    except SQLAlchemyError as exc:
        _say(f"mailgate: database unavailable, try again later: {_first_line(exc)}")
        return EX_TEMPFAIL
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


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
