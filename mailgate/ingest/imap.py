"""IMAP ingest: read helpdesk mailboxes that live on someone else's IMAP server.

One thread per configured (account, folder) keeps a connection, waits in IDLE (or polls
when the server or the config says no IDLE) and runs *passes*.  A pass selects the
folder, lists UIDs, and for each batch:

1. asks the store which of those UIDs it already holds (by ``source_ref``
   ``imap:<account>:<folder>:<uidvalidity>:<uid>``, unique in ``inbound_message``);
2. fetches the others with ``BODY.PEEK[]`` (which leaves ``\\Seen`` alone), after an
   ``RFC822.SIZE`` look that keeps over-size messages out;
3. drops any whose exact bytes are already stored (same sha256 and Message-ID) — this is
   what stops a UIDVALIDITY change from importing the whole folder a second time;
4. stores the rest through ``accept_many`` (one commit), wakes the pipeline, and only
   then flags, moves or deletes the messages the store now holds;
5. advances the cursor (``imap_cursor``), which saves work but decides nothing.

Selection is by UID, never by ``\\Seen``: a person reading the mailbox in their own
client hides nothing from mailgate.  Incremental passes look above the cursor; a *full*
pass (on every connect and every ``reconcile_interval``) lists every UID in the folder,
so a lost IDLE notification, a flag that never reached the server or a message skipped
earlier is picked up again.

Poison.  ``accept`` stores raw bytes and parsing happens later, so a message can only be
bad here in two ways: it is larger than ``max_message_size``, or the server cannot hand
it over (Dovecot, for one, drops the whole connection when a message file is
unreadable).  A batch whose FETCH fails is re-fetched one message at a time; a message
whose own FETCH fails twice, or that is over-size, is *skipped*: left in the folder,
unflagged, logged at ERROR and counted, and the pass goes on.  Full passes try skipped
messages again, so a fixed server or a raised limit brings them in.

Leases.  On PostgreSQL a folder is read by one process at a time: its thread holds
``pg_try_advisory_lock`` on a dedicated connection, and the lock goes with that
connection when the process dies, so another process takes over.  On SQLite a single
mailgate process is assumed.  The lock saves duplicate work only; correctness rests on
the unique ``source_ref`` and on acting on a message only after the store holds it.
"""

from __future__ import annotations

import contextlib
import hashlib
import imaplib
import logging
import math
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from imapclient import DELETED, SEEN, IMAPClient, SocketTimeout
from sqlalchemy import Connection, create_engine, select, text
from sqlalchemy.pool import NullPool

from mailgate.config import ImapAccountSettings
from mailgate.daemon.runtime import Runtime
from mailgate.errors import TemporaryError
from mailgate.ingest.accept import Envelope, Incoming, accept_many, sniff_message_id
from mailgate.store.db import translate_db_errors
from mailgate.store.models import ImapCursor, InboundMessage

log = logging.getLogger(__name__)

SOURCE = "imap"
BATCH_BYTES = 32 * 1024 * 1024  # message bytes held in memory per FETCH
FAILURES_BEFORE_SKIP = 2  # a message's own FETCH failing this often: skip it
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 300.0
IDLE_RENEW = 25 * 60  # RFC 2177: a client should re-issue IDLE at least every 29 minutes
IDLE_TICK = 1.0  # how often a thread in IDLE looks at its stop flag
# What a broken connection or a refusing server raises (imapclient's errors derive from
# imaplib's; socket timeouts and TLS failures are OSErrors).
NETWORK_ERRORS = (OSError, imaplib.IMAP4.error)
# What only a broken connection raises: after one of these the protocol state is unknown.
BROKEN_LINK = (OSError, imaplib.IMAP4.abort)

Wake = Callable[[], None]


class LeaseLost(TemporaryError):
    """The advisory-lock connection went away; another process may own the folder now."""


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


@dataclass(frozen=True, slots=True)
class Cursor:
    uidvalidity: int
    last_uid: int
    baseline_uid: int


def read_secret(account: ImapAccountSettings) -> str:
    """The password or token, read at every connect so a rotated one is picked up."""
    if account.password_env:
        value = os.environ.get(account.password_env)
        if value is None:
            raise TemporaryError(f"environment variable {account.password_env} is not set")
        return value
    # One trailing newline is an editor's, not the secret's.
    return Path(account.password_file).read_text(encoding="utf-8").removesuffix("\n")


def connect(account: ImapAccountSettings) -> IMAPClient:
    """A logged-in client; every socket operation is bounded by ``account.timeout``."""
    timeout = SocketTimeout(connect=account.timeout, read=account.timeout)
    context = ssl.create_default_context()  # verifies the certificate and the host name
    implicit = account.tls == "implicit"
    client = IMAPClient(
        account.host,
        port=account.effective_port,
        ssl=implicit,
        ssl_context=context if implicit else None,
        timeout=timeout,
    )
    try:
        if account.tls == "starttls":
            client.starttls(context)
        secret = read_secret(account)
        if account.auth == "xoauth2":
            client.oauth2_login(account.username, secret)
        else:
            client.login(account.username, secret)
        if account.move_to and not client.folder_exists(account.move_to):
            client.create_folder(account.move_to)
    except BaseException:
        with contextlib.suppress(Exception):
            client.shutdown()
        raise
    return client


def disconnect(client: IMAPClient, *, broken: bool = False) -> None:
    """Log out politely, or just close the socket when the link is ``broken``.

    After a timeout or a cut nothing useful can be said on the connection: a LOGOUT
    into a stalled link would only wait out the read timeout a second time before the
    reconnect.
    """
    if not broken:
        try:
            client.logout()
        except Exception:  # noqa: BLE001 -- the connection is often already gone; just drop it
            broken = True
    if broken:
        with contextlib.suppress(Exception):
            client.shutdown()


class FolderLease:
    """Who reads one folder: a PostgreSQL advisory lock, held on its own connection.

    The connection is outside the engine's pool (a poller holds it for hours) and in
    autocommit mode, so it never sits idle inside a transaction.
    """

    def __init__(self, rt: Runtime, account: str, folder: str) -> None:
        self.enabled = rt.engine.dialect.name == "postgresql"
        digest = hashlib.sha256(f"mailgate-imap\0{account}\0{folder}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self._url = rt.engine.url
        self._timeout = rt.settings.database.connect_timeout
        self._conn: Connection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None or not self.enabled

    def acquire(self) -> bool:
        if self.held:
            return True
        engine = create_engine(
            self._url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": self._timeout},
        )
        with translate_db_errors():
            conn = engine.connect()
            try:
                got = conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})
            except BaseException:
                conn.close()
                raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def check(self) -> None:
        """Raise ``LeaseLost`` when the lock's connection is gone (and the lock with it)."""
        if self._conn is None:
            if self.enabled:
                raise LeaseLost("the folder lease is not held")
            return
        try:
            self._conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means the lock is gone with its session
            self.release()
            raise LeaseLost(f"folder lease lost: {exc}") from exc

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()  # closing the session releases its advisory locks
            self._conn = None


class FolderSync:
    """The passes over one folder; holds what it learnt about failing messages."""

    def __init__(self, rt: Runtime, account: ImapAccountSettings, folder: str, wake: Wake) -> None:
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
        with translate_db_errors(), self.rt.sessions() as session:
            row = session.get(ImapCursor, (self.account.name, self.folder))
            if row is None:
                return None
            return Cursor(row.uidvalidity, row.last_uid, row.baseline_uid)

    def _save_cursor(self, cursor: Cursor) -> None:
        with translate_db_errors(), self.rt.sessions.begin() as session:
            row = session.get(ImapCursor, (self.account.name, self.folder))
            if row is None:
                row = ImapCursor(account=self.account.name, folder=self.folder)
                session.add(row)
            row.uidvalidity = cursor.uidvalidity
            row.last_uid = cursor.last_uid
            row.baseline_uid = cursor.baseline_uid
            row.updated_at = self.rt.clock()


def chunked(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class FolderPoller:
    """The reader of one folder: lease, connect, passes, IDLE or polling, reconnects."""

    def __init__(
        self,
        rt: Runtime,
        account: ImapAccountSettings,
        folder: str,
        wake: Wake,
        stop: threading.Event,
    ) -> None:
        self.account = account
        self.sync = FolderSync(rt, account, folder, wake)
        self.stats = self.sync.stats
        self.lease = FolderLease(rt, account.name, folder)
        self.stop = stop

    def run(self, *, once: bool = False, max_failures: int = 5) -> bool:
        """Read until ``stop`` is set (``once``: until one full pass succeeds).

        Returns whether the last pass completed.  With ``once``, gives up after
        ``max_failures`` failures in a row that settled no message.
        """
        delay = BACKOFF_FIRST
        failures = 0
        try:
            while not self.stop.is_set():
                progress = self.sync.progress
                try:
                    if not self.lease.acquire():
                        self.stats.state = "waiting-lease"
                        if once:
                            return False
                        self.stop.wait(self.account.poll_interval)
                        continue
                    self._connected(once)
                    if once:
                        return True
                except Exception as exc:  # noqa: BLE001 -- the per-folder boundary: log, back off, retry
                    if self.sync.progress != progress:
                        delay, failures = BACKOFF_FIRST, 0
                    failures += 1
                    self._failed(exc, delay)
                    if isinstance(exc, LeaseLost):
                        self.lease.release()
                    if once and failures >= max_failures:
                        return False
                    self.stats.state = "backoff"
                    self.stop.wait(delay)
                    delay = min(delay * 2, BACKOFF_MAX)
            return False
        finally:
            self.lease.release()

    def _failed(self, exc: BaseException, delay: float) -> None:
        self.stats.reconnects += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
        if isinstance(exc, (*NETWORK_ERRORS, TemporaryError)):
            log.warning(
                "%s: %s; reconnecting in %.0f s", self.sync.where, self.stats.last_error, delay
            )
        else:
            log.exception("%s: unexpected failure; reconnecting in %.0f s", self.sync.where, delay)

    def _connected(self, once: bool) -> None:
        self.stats.state = "syncing"
        client = connect(self.account)
        broken = False
        try:
            self._pass(client, full=True)
            if once:
                return
            last_full = time.monotonic()
            use_idle = self.account.idle and client.has_capability("IDLE")
            while not self.stop.is_set():
                due = last_full + self.account.reconcile_interval
                if use_idle:
                    changed = self._idle(client, until=min(due, time.monotonic() + IDLE_RENEW))
                else:
                    self.stats.state = "polling"
                    left = due - time.monotonic()
                    self.stop.wait(max(0.0, min(self.account.poll_interval, left)))
                    changed = True
                if self.stop.is_set():
                    break
                full = time.monotonic() >= due
                if full or changed:
                    self._pass(client, full=full)
                    if full:
                        last_full = time.monotonic()
        except BROKEN_LINK:
            broken = True
            raise
        finally:
            disconnect(client, broken=broken)

    def _pass(self, client: IMAPClient, *, full: bool) -> None:
        self.lease.check()
        self.stats.state = "syncing"
        self.sync.run(client, full=full)

    def _idle(self, client: IMAPClient, until: float) -> bool:
        """Wait in IDLE; True when the server announced new mail (or fell silent oddly)."""
        client.idle()
        self.stats.state = "idle"
        try:
            while not self.stop.is_set():
                left = until - time.monotonic()
                if left <= 0:
                    return False
                wait = min(IDLE_TICK, left)
                started = time.monotonic()
                responses = client.idle_check(timeout=wait)
                if any(len(r) > 1 and r[1] == b"EXISTS" for r in responses):
                    return True
                if not responses and time.monotonic() - started < wait / 2:
                    # imapclient returns nothing at once when the socket hit EOF; run a
                    # pass, whose first command then reports the broken connection.
                    return True
            return False
        finally:
            self.stats.state = "syncing"
            client.idle_done()


class ImapService:
    """Every configured folder's poller, each in its own thread, for ``mailgate serve``."""

    def __init__(self, rt: Runtime, wake: Wake) -> None:
        self._stop = threading.Event()
        self.pollers = [
            FolderPoller(rt, account, folder, wake, self._stop)
            for account in rt.settings.imap
            for folder in account.folders
        ]
        self._threads: list[threading.Thread] = []

    @property
    def stats(self) -> list[FolderStats]:
        return [p.stats for p in self.pollers]

    def start(self) -> None:
        for poller in self.pollers:
            thread = threading.Thread(
                target=poller.run,
                name=f"imap-{poller.stats.account}-{poller.stats.folder}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30) -> None:
        """Ask every poller to stop and wait for them; a pass in progress finishes its
        current FETCH or commit first (bounded by the account's timeout)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("stop: %s did not finish in time", thread.name)


@dataclass
class PollResult:
    stats: FolderStats
    completed: bool
    busy: bool = False  # another process holds the folder's lease
    errors: list[str] = field(default_factory=list)


def poll_once(
    rt: Runtime,
    accounts: Sequence[str] = (),
    wake: Wake = lambda: None,
    max_failures: int = 3,
) -> list[PollResult]:
    """Import what each folder holds now (one full pass, with reconnects), then return."""
    results = []
    stop = threading.Event()
    for account in rt.settings.imap:
        if accounts and account.name not in accounts:
            continue
        for folder in account.folders:
            poller = FolderPoller(rt, account, folder, wake, stop)
            completed = poller.run(once=True, max_failures=max_failures)
            results.append(
                PollResult(
                    poller.stats,
                    completed,
                    busy=poller.stats.state == "waiting-lease",
                    errors=[poller.stats.last_error] if not completed else [],
                )
            )
    return results
