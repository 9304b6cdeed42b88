"""One pass over one folder: which UIDs to read, fetching them in bounded groups, storing
them, and only then flagging, moving or deleting them on the server.

A pass lists UIDs above the cursor (incremental) or every UID (full), asks the store
which it already holds (by ``source_ref``), looks at sizes, fetches the rest with
``BODY.PEEK[]``, drops any whose exact bytes and Message-ID are already stored, commits
the others in one ``accept_many`` and then settles the lot on the server.  What keeps
failing to FETCH, or is over-size, is skipped: left in the folder, logged and counted,
and tried again by a later full pass.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from imapclient import DELETED, SEEN, IMAPClient
from sqlalchemy import select

from mailgate.config import ImapAccountSettings
from mailgate.ingest.accept import Envelope, Incoming, accept_many, sniff_message_id
from mailgate.ingest.context import IngestContext
from mailgate.ingest.imap import cursors
from mailgate.ingest.imap.cursors import Cursor
from mailgate.ingest.imap.link import NETWORK_ERRORS
from mailgate.store.db import translate_db_errors
from mailgate.store.models import InboundMessage

log = logging.getLogger("mailgate.ingest.imap")  # one logger for every part (docs/deploy.md)

SOURCE = "imap"
BATCH_BYTES = 32 * 1024 * 1024  # message bytes held in memory per FETCH
FAILURES_BEFORE_SKIP = 2  # a message's own FETCH failing this often: skip it

Wake = Callable[[], None]


@dataclass
class FolderStats:
    """What one folder's reader has done, for logs, tests and ``poll-once``."""

    account: str
    folder: str
    state: str = "starting"  # starting | waiting-lease | syncing | idle | polling | backoff
    stored: int = 0
    duplicates: int = 0  # already stored (same source_ref, or same bytes and Message-ID)
    skipped: int = 0  # over-size or unfetchable; left in the folder
    passes: int = 0
    reconnects: int = 0
    last_error: str = ""
    last_pass_at: datetime | None = None


class FolderSync:
    """The passes over one folder; holds what it learnt about failing messages."""

    def __init__(
        self, rt: IngestContext, account: ImapAccountSettings, folder: str, wake: Wake
    ) -> None:
        self.rt = rt
        self.account = account
        self.folder = folder
        self.wake = wake
        self.stats = FolderStats(account.name, folder)
        self.where = f"imap {account.name}/{folder}"
        self.progress = 0  # messages settled (stored, recognised or skipped), ever
        self._suspects: set[int] = set()  # in a batch whose FETCH failed: fetch alone
        self._failures: dict[int, int] = {}
        self._skipped: dict[int, float] = {}  # uid → when it was skipped (monotonic)
        self._envelope = Envelope(
            mail_from=None,
            rcpt_to=(account.address.lower(),) if account.address else (),
            peer=f"imap:{account.host}",
        )

    def ref(self, uidvalidity: int, uid: int) -> str:
        return f"imap:{self.account.name}:{self.folder}:{uidvalidity}:{uid}"

    def run(self, client: IMAPClient, *, full: bool) -> int:
        """One pass over the folder; return how many messages were newly stored."""
        info = client.select_folder(self.folder)
        uidvalidity = int(info[b"UIDVALIDITY"])
        cursor = self._load_cursor()
        uids: list[int] | None = None
        if cursor is None or cursor.uidvalidity != uidvalidity:
            first = cursor is None
            uids = sorted(int(u) for u in client.search("ALL"))
            cursor = Cursor(uidvalidity, 0, uids[-1] if uids else 0)
            if first:
                log.info("%s: first read, %d messages present", self.where, len(uids))
            else:
                log.warning(
                    "%s: UIDVALIDITY changed to %d; re-reading %d messages, recognising "
                    "stored ones by Message-ID and content hash",
                    self.where,
                    uidvalidity,
                    len(uids),
                )
            self._save_cursor(cursor)
            self._forget_failures()
            full = True
        if uids is None:
            found = client.search("ALL" if full else ["UID", f"{cursor.last_uid + 1}:*"])
            uids = sorted(int(u) for u in found)
        # A skipped message is tried again by a full pass once reconcile_interval has
        # passed, not by the pass that follows the reconnect its FETCH may have caused.
        retry_after = time.monotonic() - self.account.reconcile_interval
        uids = [
            u
            for u in uids
            if (skipped_at := self._skipped.get(u)) is None or (full and skipped_at <= retry_after)
        ]
        older = [u for u in uids if u <= cursor.last_uid]
        newer = [u for u in uids if u > cursor.last_uid]
        stored = 0
        size = self.account.batch_size
        # Below the cursor: only what a full pass finds missing or left behind.
        for chunk in chunked(older, size):
            stored += self._batch(client, cursor, chunk, settle_known=self._moves)
        done = 0
        for chunk in chunked(newer, size):
            stored += self._batch(client, cursor, chunk, settle_known=True)
            cursor = Cursor(cursor.uidvalidity, chunk[-1], cursor.baseline_uid)
            self._save_cursor(cursor)
            done += len(chunk)
            if len(newer) > size:
                log.info(
                    "%s: %d of %d read; totals: %d stored, %d already present, %d skipped",
                    self.where,
                    done,
                    len(newer),
                    self.stats.stored,
                    self.stats.duplicates,
                    self.stats.skipped,
                )
        self.stats.passes += 1
        self.stats.last_pass_at = self.rt.clock()
        return stored

    @property
    def _moves(self) -> bool:
        # With move/delete, a stored message still in the folder means the action did not
        # reach the server: do it again.  With \Seen, a stored message without the flag
        # may have been marked unread by a person since: leave it.
        return self.account.after != "seen"

    def _batch(
        self, client: IMAPClient, cursor: Cursor, uids: list[int], *, settle_known: bool
    ) -> int:
        known = self._stored(cursor.uidvalidity, uids)
        if settle_known:
            self._settle(client, sorted(known))
        wanted = self._sizes(client, [u for u in uids if u not in known])
        return sum(
            self._store(client, cursor, self._fetch(client, group))
            for group in self._groups(wanted)
        )

    def _sizes(self, client: IMAPClient, uids: list[int]) -> list[tuple[int, int]]:
        """(uid, size) of the messages to fetch; over-size ones are skipped here."""
        if not uids:
            return []
        sizes = client.fetch(uids, [b"RFC822.SIZE"])
        wanted = []
        for uid in uids:
            size = sizes.get(uid, {}).get(b"RFC822.SIZE")
            if size is None:
                continue  # expunged since the search
            if size > self.account.max_message_size:
                # The limit changes only with a restart: no point in trying again before.
                self._skip(uid, f"{size} bytes is over max_message_size", retry=False)
                continue
            wanted.append((uid, int(size)))
        return wanted

    def _groups(self, wanted: list[tuple[int, int]]) -> Iterator[list[int]]:
        """FETCH groups bounded by count and bytes; suspects go alone."""
        group: list[int] = []
        carried = 0
        for uid, size in wanted:
            if uid in self._suspects:
                yield [uid]
                continue
            if group and (len(group) >= self.account.batch_size or carried + size > BATCH_BYTES):
                yield group
                group, carried = [], 0
            group.append(uid)
            carried += size
        if group:
            yield group

    def _fetch(self, client: IMAPClient, uids: list[int]) -> dict[int, bytes]:
        try:
            response = client.fetch(uids, [b"BODY.PEEK[]"])
        except NETWORK_ERRORS as exc:
            self._blame(uids, exc)
            raise
        fetched: dict[int, bytes] = {}
        for uid in uids:
            data = response.get(uid)
            if data is None:
                continue  # expunged meanwhile: nothing to import, nothing to flag
            raw = data.get(b"BODY[]")
            if not raw:
                self._skip(uid, "the server returned no message body")
                continue
            fetched[uid] = bytes(raw)
            self._suspects.discard(uid)
            self._failures.pop(uid, None)
            self._skipped.pop(uid, None)
        return fetched

    def _blame(self, uids: list[int], exc: BaseException) -> None:
        if len(uids) > 1:
            self._suspects.update(uids)
            return
        [uid] = uids
        self._failures[uid] = self._failures.get(uid, 0) + 1
        if self._failures[uid] >= FAILURES_BEFORE_SKIP:
            self._skip(uid, f"FETCH failed {self._failures[uid]} times, last: {exc}")

    def _skip(self, uid: int, reason: str, *, retry: bool = True) -> None:
        if uid not in self._skipped:
            self.stats.skipped += 1
            self.progress += 1
        self._skipped[uid] = time.monotonic() if retry else math.inf
        # When it is tried again it goes alone, and one more failure skips it again.
        self._suspects.add(uid)
        self._failures[uid] = FAILURES_BEFORE_SKIP - 1
        log.error("%s: UID %d left in the folder, not imported: %s", self.where, uid, reason)

    def _forget_failures(self) -> None:
        self._suspects.clear()
        self._failures.clear()
        self._skipped.clear()

    def _store(self, client: IMAPClient, cursor: Cursor, fetched: dict[int, bytes]) -> int:
        """Commit what was fetched, then flag, move or delete it."""
        if not fetched:
            return 0
        same_bytes = self._same_bytes(fetched)
        items = [
            Incoming(
                raw,
                self._envelope,
                SOURCE,
                self.ref(cursor.uidvalidity, uid),
                acknowledge=uid > cursor.baseline_uid or self.account.acknowledge_existing,
            )
            for uid, raw in fetched.items()
            if uid not in same_bytes
        ]
        new = 0
        if items:
            results = accept_many(self.rt.sessions, items, clock=self.rt.clock)
            new = sum(not r.duplicate for r in results)
        self.stats.stored += new
        self.stats.duplicates += len(fetched) - new
        self.progress += len(fetched)
        if new:
            self.wake()
        # Everything in ``fetched`` is now in the store: only now may the server hear it.
        self._settle(client, sorted(fetched))
        return new

    def _same_bytes(self, fetched: dict[int, bytes]) -> set[int]:
        """UIDs whose exact bytes (and Message-ID) are already stored under any ref."""
        digests = {uid: hashlib.sha256(raw).hexdigest() for uid, raw in fetched.items()}
        with translate_db_errors(), self.rt.sessions() as session:
            rows = session.execute(
                select(InboundMessage.sha256, InboundMessage.message_id).where(
                    InboundMessage.sha256.in_(set(digests.values()))
                )
            ).all()
        stored = {(sha, mid) for sha, mid in rows}
        return {
            uid
            for uid, digest in digests.items()
            if (digest, sniff_message_id(fetched[uid])) in stored
        }

    def _settle(self, client: IMAPClient, uids: Sequence[int]) -> None:
        """The configured after-action, for messages the store is known to hold."""
        if not uids:
            return
        if self.account.after == "seen":
            client.add_flags(uids, [SEEN], silent=True)
        elif (target := self.account.move_to) is not None:
            if client.has_capability("MOVE"):
                client.move(uids, target)
            else:
                client.copy(uids, target)
                self._expunge(client, uids)
        else:
            self._expunge(client, uids)

    @staticmethod
    def _expunge(client: IMAPClient, uids: Sequence[int]) -> None:
        client.add_flags(uids, [DELETED], silent=True)
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)
        else:
            # Without UIDPLUS (RFC 4315) the only EXPUNGE removes every \Deleted message,
            # including ones a person marked; they asked for that deletion anyway.
            client.expunge()

    def _stored(self, uidvalidity: int, uids: list[int]) -> set[int]:
        if not uids:
            return set()
        refs = {self.ref(uidvalidity, uid): uid for uid in uids}
        with translate_db_errors(), self.rt.sessions() as session:
            found = session.scalars(
                select(InboundMessage.source_ref).where(InboundMessage.source_ref.in_(refs))
            ).all()
        return {refs[r] for r in found if r is not None}

    def _load_cursor(self) -> Cursor | None:
        return cursors.load(self.rt.sessions, self.account.name, self.folder)

    def _save_cursor(self, cursor: Cursor) -> None:
        cursors.save(self.rt.sessions, self.account.name, self.folder, cursor, self.rt.clock())


def chunked(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
