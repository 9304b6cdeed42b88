"""Group commit for the listeners: messages that arrive together are stored together.

Every SMTP/LMTP session waits for its own message to be durable before answering 250,
and on SQLite each commit is an fsync.  One committer thread takes whatever messages
are waiting, stores them with ``accept_many`` in one transaction, and then releases
each session with its own result — one fsync for the group, and no lock contention
between sessions.  Nothing is answered before the commit that holds it: the
durability contract of ``accept`` is unchanged.  Under light load a group is one
message, so nobody waits for company.

The committer takes messages before it can store them: ``mailgate serve`` greets and
reads DATA while the database is still being opened (``daemon.boot``), and the
sessions' messages wait in the queue until ``start`` hands over the sessions and the
thread begins.  So this module imports SQLAlchemy only in that thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING

from mailgate.clock import Clock
from mailgate.errors import PermanentError
from mailgate.ingest.envelope import Accepted, Incoming

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MAX_GROUP = 64


class GroupCommitter:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sessions: sessionmaker[Session] | None = None
        self._queue: queue.Queue[tuple[Incoming, Future[Accepted]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="mailgate-commit", daemon=True)

    @property
    def started(self) -> bool:
        return self.sessions is not None

    def start(self, sessions: sessionmaker[Session]) -> None:
        """Store from now on, beginning with what sessions queued before (once)."""
        if self.sessions is not None:
            return
        self.sessions = sessions
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        """Store what is queued, then end the thread (if it ever began)."""
        if self.sessions is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)

    def submit(self, item: Incoming) -> Future[Accepted]:
        # Refused here, before it could share (and fail) a group.
        if not item.raw:
            raise PermanentError("empty-message", "no bytes were received")
        future: Future[Accepted] = Future()
        self._queue.put((item, future))
        return future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                group.append(nxt)
            self._store(group)

    def _store(self, group: list[tuple[Incoming, Future[Accepted]]]) -> None:
        from mailgate.ingest.accept import accept_many  # SQLAlchemy: in this thread only

        assert self.sessions is not None
        try:
            results = accept_many(self.sessions, [item for item, _ in group], clock=self.clock)
        except Exception as exc:  # noqa: BLE001 -- every waiting session gets the failure (451)
            for _, future in group:
                future.set_exception(exc)
            return
        for (_, future), result in zip(group, results, strict=True):
            future.set_result(result)
