"""Running the readers: one thread per folder that keeps a connection, waits in IDLE
(or polls) and runs passes, backing off and reconnecting after any failure; and
``poll_once``, one full pass per folder for ``mailgate imap poll-once``.

A full pass runs on every connect and every ``reconcile_interval``; between them IDLE
(or the poll interval) triggers incremental ones.  A failure that settled no message
doubles the back-off, up to ``BACKOFF_MAX``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from imapclient import IMAPClient

from mailgate.config import ImapAccountSettings
from mailgate.errors import TemporaryError
from mailgate.ingest.context import ImapContext
from mailgate.ingest.imap.lease import FolderLease, LeaseLost
from mailgate.ingest.imap.link import BROKEN_LINK, NETWORK_ERRORS, connect, disconnect
from mailgate.ingest.imap.sync import FolderStats, FolderSync, Wake

log = logging.getLogger("mailgate.ingest.imap")  # one logger for every part (docs/deploy.md)

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 300.0
IDLE_RENEW = 25 * 60  # RFC 2177: a client should re-issue IDLE at least every 29 minutes
IDLE_TICK = 1.0  # how often a thread in IDLE looks at its stop flag


class FolderPoller:
    """The reader of one folder: lease, connect, passes, IDLE or polling, reconnects."""

    def __init__(
        self,
        rt: ImapContext,
        account: ImapAccountSettings,
        folder: str,
        wake: Wake,
        stop: threading.Event,
    ) -> None:
        self.account = account
        self.passwords = rt.imap_passwords
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
        client = connect(self.account, self.passwords)
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

    def __init__(self, rt: ImapContext, wake: Wake) -> None:
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
    rt: ImapContext,
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
