"""The facts workers read a stored message themselves, by its inbound id (issue 21).

A claimed batch used to carry every message's raw bytes: the daemon loaded them, pickled
them to a worker (a second copy in the daemon, two in the worker) and held them until
the batch was written.  For a 34 MB message that was four copies on the way to the
parser.  Now the claim loads only the head of each message (what the daemon itself
reads: the DKIM/DMARC names for ``verify.lookahead``, the returned headers of a bounce),
and a worker asks the database for the bytes of the message it is given:

* SQLite: a read-only connection (``mode=ro``) to the same file, one per worker;
* PostgreSQL: one psycopg connection per worker, in autocommit, the bytes in binary
  form (text form would be hex: twice the size on the wire and a decoding copy).

Only ``SELECT raw FROM inbound_message WHERE id = …`` runs there: the worker still
writes nothing, and the message was committed before it was claimed.  A read that fails
is a ``TemporaryError`` for that message (retried like any other).
``body_digest`` is what deduplication needs of the whole body, computed in the worker
while it holds the bytes.
"""

from __future__ import annotations

import atexit
import hashlib
import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from mailgate.errors import TemporaryError

_CONNECTIONS: dict[str, Any] = {}  # one per database and process, the newest few
KEPT_CONNECTIONS = 4  # an inline analyzer may see many databases (tests)
_QUERY = "SELECT raw FROM inbound_message WHERE id = {}"
_DIGEST_CHUNK = 1 << 20
_HEADER_END = re.compile(rb"\r?\n\r?\n")
CONNECT_SECONDS = 10


@dataclass(frozen=True, slots=True)
class RawReader:
    """Reads an inbound message's raw bytes by id (small and picklable: the URL)."""

    url: str

    def __call__(self, inbound_id: int) -> bytes:
        try:
            raw = _read(self.url, inbound_id)
        except (sqlite3.Error, OSError) as exc:
            _CONNECTIONS.pop(self.url, None)
            raise TemporaryError(f"reading inbound id={inbound_id}: {exc}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg"):
                _CONNECTIONS.pop(self.url, None)
                raise TemporaryError(f"reading inbound id={inbound_id}: {exc}") from exc
            raise
        if raw is None:
            raise TemporaryError(f"inbound id={inbound_id} not found")
        return bytes(raw)


def raw_reader(url: str) -> RawReader | None:
    """The reader for a database the workers can open; None for SQLite in memory (or
    an unnamed file), which only the daemon's own connections see."""
    if url.startswith("sqlite"):
        path = url.partition(":///")[2]
        if not path or path == ":memory:" or "mode=memory" in path:
            return None
    return RawReader(url)


def _read(url: str, inbound_id: int) -> bytes | None:
    if url.startswith("sqlite"):
        conn = _CONNECTIONS.get(url)
        if conn is None:
            path = url.partition(":///")[2]
            conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, timeout=CONNECT_SECONDS, check_same_thread=False
            )
            _keep(url, conn)
        row = conn.execute(_QUERY.format("?"), (inbound_id,)).fetchone()
        return row[0] if row else None
    import psycopg  # only a worker that serves a PostgreSQL daemon pays for it

    conn = _CONNECTIONS.get(url)
    if conn is None or conn.closed:
        conn = psycopg.connect(
            url.replace("+psycopg", "", 1), autocommit=True, connect_timeout=CONNECT_SECONDS
        )
        _keep(url, conn)
    found = conn.execute(_QUERY.format("%s"), (inbound_id,), binary=True).fetchone()
    return found[0] if found else None


def _keep(url: str, conn: Any) -> None:
    while len(_CONNECTIONS) >= KEPT_CONNECTIONS:
        oldest = next(iter(_CONNECTIONS))
        _CONNECTIONS.pop(oldest).close()
    _CONNECTIONS[url] = conn


@atexit.register
def _close_all() -> None:
    """Close what is kept at a clean exit (a test process, ``drain``): a connection
    dropped by the garbage collector is reported as a leak."""
    while _CONNECTIONS:
        _CONNECTIONS.popitem()[1].close()


def body_digest(raw: bytes) -> str:
    """SHA-256 of the body (after the blank line) with CRLF read as LF: line endings
    differ between SMTP and pipe/IMAP copies of the same mail."""
    end = _HEADER_END.search(raw)
    return digest_from(raw, end.end() if end else len(raw))


def digest_from(raw: bytes, start: int) -> str:
    """SHA-256 of ``raw[start:]``, CRLF read as LF, a megabyte at a time: slicing and
    replacing the whole body would make two copies of a large attachment."""
    digest = hashlib.sha256()
    view = memoryview(raw)
    while start < len(raw):
        stop = min(start + _DIGEST_CHUNK, len(raw))
        while stop < len(raw) and raw[stop - 1] == 0x0D:  # never split a CRLF
            stop += 1
        digest.update(view[start:stop].tobytes().replace(b"\r\n", b"\n"))
        start = stop
    return digest.hexdigest()
