"""``Idempotency-Key``: a retried POST gets the first answer, never a second ticket.

The key is claimed in the transaction of the change it guards: the ``api_request`` row
(unique per token and key) is inserted first, the change made, the answer stored, and
all of it commits together.  A retry after that finds the row and gets the stored
answer; a retry racing the first attempt waits on the unique index (PostgreSQL) or the
writer lock (SQLite) and then finds it.  A request that failed left no row, so its
retry is carried out afresh.  The same key with a different body is refused (422).
Keys are kept for a day (``prune``, a daily job of the daemon).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailgate.daemon.api.problems import invalid
from mailgate.daemon.runtime import Runtime
from mailgate.store.db import translate_db_errors
from mailgate.store.models import ApiRequest

Answer = tuple[int, dict[str, Any]]
HEADER = "Idempotency-Key"
KEEP = timedelta(days=1)  # how long a retry is recognised as one


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"\0".join([method.encode(), path.encode(), body])).hexdigest()


def check_key(key: str | None) -> str | None:
    if key is not None and not (0 < len(key) <= 255 and key.isprintable()):
        raise invalid([(HEADER, "1 to 255 printable characters")])
    return key


def once(
    rt: Runtime,
    token: str,
    key: str | None,
    print_: str,
    work: Callable[[Session], Answer],
) -> tuple[Answer, bool]:
    """Run ``work`` in a transaction unless ``key`` was answered before; return the
    answer and whether it was carried out now (False: a stored answer replayed)."""
    if key is None:
        with translate_db_errors(), rt.sessions.begin() as session:
            return work(session), True
    try:
        with translate_db_errors(), rt.sessions.begin() as session:
            prior = _stored(session, token, key)
            if prior is not None:
                return _replay(prior, print_), False
            row = ApiRequest(
                token=token,
                key=key,
                fingerprint=print_,
                status=0,
                response={},
                created_at=rt.clock(),
            )
            session.add(row)
            session.flush()  # claims the key before the change is made
            status, body = work(session)
            row.status, row.response = status, body
            return (status, body), True
    except IntegrityError:
        # Another attempt with this key committed first: answer as it did.
        with translate_db_errors(), rt.sessions() as session:
            prior = _stored(session, token, key)
        if prior is None:
            raise
        return _replay(prior, print_), False


def _stored(session: Session, token: str, key: str) -> ApiRequest | None:
    return session.scalar(
        select(ApiRequest).where(ApiRequest.token == token, ApiRequest.key == key)
    )


def _replay(prior: ApiRequest, print_: str) -> Answer:
    if prior.fingerprint != print_:
        raise invalid([(HEADER, "already used for a different request")])
    return prior.status, dict(prior.response)


def prune(rt: Runtime) -> int:
    """Forget keys older than ``KEEP`` (a scheduled job); return how many."""
    with translate_db_errors(), rt.sessions.begin() as session:
        done = session.execute(delete(ApiRequest).where(ApiRequest.created_at < rt.clock() - KEEP))
        return int(getattr(done, "rowcount", 0) or 0)
