"""The daemon: the IMAP pollers, the processing worker, the outbox sender, the
scheduler and the HTTP endpoints (health, readiness, Prometheus metrics, the confirm
page), behind the SMTP/LMTP listeners (``daemon.listen``), which ``mailgate serve``
opens before any of this is imported (``daemon.boot``).

Everything but the IMAP pollers runs on one asyncio loop; database work runs in threads
(``asyncio.to_thread``) so the SMTP sessions never wait on it.  imapclient is blocking,
so each polled folder has a thread of its own (``ingest.imap``) that wakes the worker
through the loop.  ``accept`` wakes the worker; the worker wakes the outbox; an APScheduler job
wakes both every ``processing.sweep_seconds`` to pick up retries whose time has come
and messages whose worker died.

Lifecycle.  ``/readyz`` answers 503 until ``start`` has brought everything up.
SIGTERM starts a drain: the listening sockets stay open but every new
connection is greeted with 421 4.3.2 and closed, and a new MAIL on an open connection
gets the same, so an MTA defers at once instead of timing out; transactions already
past MAIL may finish (up to ``daemon.shutdown_seconds``), then the worker finishes
its batch and the process exits 0.  SIGHUP re-reads the config file and applies what
does not need new sockets or a new database: templates, relay, helpdesk addresses,
limits, logging.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from mailgate.config import Settings, parse_hostport
from mailgate.daemon import api, logs, wiring
from mailgate.daemon.api import idempotency
from mailgate.daemon.leader import Leadership
from mailgate.daemon.listen import ListenError, Listeners, listening
from mailgate.daemon.runtime import Runtime
from mailgate.daemon.webapp import make_app
from mailgate.errors import MailgateError
from mailgate.ingest.committer import GroupCommitter
from mailgate.ingest.imap import ImapService
from mailgate.pipeline import batches
from mailgate.replies import outbox
from mailgate.tickets import challenges, retention, sla
from mailgate.webhooks import record
from mailgate.webhooks.deliver import Deliverer

log = logging.getLogger(__name__)

BATCH = 20
# Sections whose change needs a restart: they own sockets or the database pool.
RESTART_ONLY = ("database", "smtp", "lmtp", "http", "api")


class Daemon:
    """Everything behind the listeners, and the listeners' drain on SIGTERM.

    ``listeners`` already open (``daemon.boot`` opens them before the runtime exists)
    are adopted; without them ``start`` opens its own (the tests' daemon).
    """

    def __init__(
        self,
        rt: Runtime,
        environ: Mapping[str, str] | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        self.rt = rt
        environ = os.environ if environ is None else environ
        # The panel API's tokens and webhook secrets are read once, here.
        self._api_tokens = api.tokens_from(rt, environ)
        record.install(rt)
        self._webhooks = Deliverer(rt, environ)
        self._hooks = asyncio.Event()
        self._open_listeners = listeners is None
        self.listeners = listeners or Listeners(rt, GroupCommitter(rt.clock))
        self.ports = self.listeners.ports
        self._started = False
        self._tasks: list[asyncio.Task[None]] = []
        self._work = asyncio.Event()
        self._send = asyncio.Event()
        self._stopping = asyncio.Event()
        self._scheduler: AsyncIOScheduler | None = None
        self._http: web.AppRunner | None = None
        self._worker = batches.Worker(rt, ahead=True)
        self._dispatcher = outbox.Dispatcher(rt)
        self._leader = Leadership(rt.engine)
        self.imap: ImapService | None = None

    @property
    def draining(self) -> bool:
        return self.listeners.draining

    async def start(self) -> None:
        """Everything behind the listeners; the facts workers start with the first batch."""
        loop = asyncio.get_running_loop()
        settings = self.rt.settings
        if self._open_listeners:
            await self.listeners.open()
        self.listeners.adopt(self.rt, self.rt.sessions, self._work.set)
        self.rt.metrics.watch_store(self.rt.sessions, self.rt.clock)
        if settings.http.listen:
            await self._start_http()
        if settings.imap:
            self.imap = ImapService(self.rt, self._wake_from_thread(loop))
            self.imap.start()
        self._tasks = [
            asyncio.create_task(self._loop("worker", self._work, self._process)),
            asyncio.create_task(self._loop("outbox", self._send, self._flush)),
            asyncio.create_task(self._webhooks.run(self._hooks, self._stopping)),
        ]
        self._scheduler = AsyncIOScheduler(event_loop=loop)
        # (job, every N seconds); all but the sweep run only in the leading instance
        # (they check ``_leading`` themselves).
        jobs: list[tuple[Callable[[], object], int]] = [
            (self._sweep, settings.processing.sweep_seconds),
            (self._challenges, settings.processing.sweep_seconds),
            (self._purge, settings.retention.check_seconds),
            (self._prune, settings.retention.check_seconds),
            (self._escalate, settings.sla.check_seconds),
            (self._close_resolved, settings.sla.check_seconds),
        ]
        for job, seconds in jobs:
            self._scheduler.add_job(
                job, "interval", seconds=seconds, max_instances=1, coalesce=True
            )
        self._scheduler.start()
        self._started = True
        self._sweep()  # whatever a previous run left behind, or came in while starting

    async def _leading(self) -> bool:
        """Whether this instance runs the once-per-cluster jobs (see ``leader``)."""
        try:
            return await asyncio.to_thread(self._leader.check)
        except Exception as exc:  # noqa: BLE001 -- no database, no leadership: skip this round
            log.warning("leadership check: %s", exc)
            return False

    async def _purge(self) -> None:
        """Empty raw mail and attachment bytes past retention (one instance)."""
        if not await self._leading():
            return
        try:
            messages, blobs = await asyncio.to_thread(retention.purge, self.rt)
        except MailgateError as exc:
            log.warning("retention purge: %s", exc)
            return
        if messages or blobs:
            log.info("retention: %s raw message(s), %s attachment(s) purged", messages, blobs)

    async def _prune(self) -> None:
        """Forget old idempotency keys and long-delivered webhook events (one instance)."""
        if not await self._leading():
            return
        try:
            keys = await asyncio.to_thread(idempotency.prune, self.rt)
            events = await asyncio.to_thread(self._webhooks.prune)
        except MailgateError as exc:
            log.warning("pruning API keys and webhook events: %s", exc)
            return
        if keys or events:
            log.info("pruned %s idempotency key(s), %s webhook event(s)", keys, events)

    async def _escalate(self) -> None:
        """Mail the operators about tickets whose first response is overdue."""
        if not await self._leading():
            return
        try:
            if await asyncio.to_thread(sla.escalate, self.rt):
                self._send.set()
        except MailgateError as exc:
            log.warning("sla escalation: %s", exc)

    async def _close_resolved(self) -> None:
        """Close tickets that stayed resolved long enough."""
        if not await self._leading():
            return
        try:
            closed = await asyncio.to_thread(sla.close_resolved, self.rt)
        except MailgateError as exc:
            log.warning("closing resolved tickets: %s", exc)
            return
        if closed:
            log.info("closed %s resolved ticket(s)", closed)

    async def _challenges(self) -> None:
        """Expire unanswered confirmation requests and send the one reminder."""
        if not await self._leading():
            return
        try:
            expired, reminded = await asyncio.to_thread(challenges.sweep, self.rt)
        except MailgateError as exc:
            log.warning("challenge sweep: %s", exc)
            return
        if expired or reminded:
            log.info("challenges: %s expired, %s reminded", expired, reminded)
            self._send.set()

    def _wake_from_thread(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        def wake() -> None:
            # The loop may already be closed when a poller finishes during shutdown.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._work.set)

        return wake

    def _sweep(self) -> None:
        self._work.set()
        self._changed()

    def _changed(self) -> None:
        """Tickets changed: mail may be queued, webhook events written."""
        self._send.set()
        self._hooks.set()

    async def _loop(
        self, name: str, event: asyncio.Event, step: Callable[[], Awaitable[int]]
    ) -> None:
        while not self._stopping.is_set():
            await event.wait()
            event.clear()
            while not self._stopping.is_set():
                try:
                    done = await step()
                except MailgateError as exc:
                    log.warning("%s: %s; waiting for the next sweep", name, exc)
                    break
                except Exception:  # the per-batch boundary: keep the daemon alive
                    log.exception("%s: unexpected failure; waiting for the next sweep", name)
                    break
                if not done:
                    break

    async def _process(self) -> int:
        done = await asyncio.to_thread(self._worker.run_pending, BATCH)
        if done:
            self._changed()
        return done

    async def _flush(self) -> int:
        return await asyncio.to_thread(self._dispatcher.flush, BATCH)

    async def _start_http(self) -> None:
        self._http = web.AppRunner(
            make_app(self.rt, self._changed, self._not_ready, self._api_tokens),
            access_log=None,
        )
        await self._http.setup()
        host, port = parse_hostport(self.rt.settings.http.listen)
        site = web.TCPSite(self._http, host, port)
        with listening("http", self.rt.settings.http.listen):
            await site.start()
        self.ports["http"] = int(self._http.addresses[0][1])

    def _not_ready(self) -> str | None:
        """Why the daemon itself is not ready (draining, starting, a listener down), or
        None."""
        if self.draining:
            return "shutting down"
        if not self._started:
            return "starting: the pipeline is not up yet"
        down = self.listeners.not_serving()
        return f"listeners: {down} not serving" if down else None

    def reload(self, new: Settings) -> None:
        """Apply re-read settings, keeping the sections that own sockets and the DB."""
        old = self.rt.settings
        for name in RESTART_ONLY:
            if getattr(new, name) != getattr(old, name):
                log.warning("reload: [%s] changed; it takes effect after a restart", name)
        kept = {name: getattr(old, name) for name in RESTART_ONLY}
        wiring.reload(self.rt, dataclasses.replace(new, **kept))
        logs.configure(self.rt.settings.log)
        log.info("reload: configuration and templates re-read")

    async def stop(self, timeout: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        if timeout is None:
            timeout = self.rt.settings.daemon.shutdown_seconds
        deadline = loop.time() + timeout
        self.listeners.drain()
        self.rt.metrics.up.set(0)
        if self.imap is not None:
            # Pollers stop first: nothing is flagged on the server after this.
            await asyncio.to_thread(self.imap.stop, timeout)

        while self.listeners.busy():
            if loop.time() > deadline:
                log.warning("stop: giving up on open SMTP/LMTP transactions")
                break
            await asyncio.sleep(0.05)
        self.listeners.close()
        await asyncio.to_thread(self.listeners.committer.stop)
        timeout = max(deadline - loop.time(), 1.0)
        self._stopping.set()
        self._work.set()
        self._changed()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks), timeout=timeout)
        for task in self._tasks:
            task.cancel()
        # A batch claimed ahead and not processed goes back, not left to its lease.
        await asyncio.to_thread(self._worker.close)
        await asyncio.to_thread(self._leader.release)
        if self._http is not None:
            await self._http.cleanup()
        await self.listeners.wait_closed()


async def run(
    daemon: Daemon, stop: asyncio.Event, reread: Callable[[], Settings] | None = None
) -> None:
    """Start what is behind the listeners, run until ``stop`` is set (SIGTERM, SIGINT),
    then drain; on SIGHUP apply ``reread()``.

    Raises ``ListenError`` when a socket cannot be bound, after closing what had started.
    """
    try:
        await daemon.start()
    except ListenError:
        await daemon.stop(timeout=1)
        raise
    if reread is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _reloader(daemon, reread))
    log.info("mailgate ready: %s", ", ".join(f"{k}={v}" for k, v in daemon.ports.items()))
    await stop.wait()
    log.info("stopping: draining for up to %ss", daemon.rt.settings.daemon.shutdown_seconds)
    await daemon.stop()
    log.info("stopped")


def _reloader(daemon: Daemon, reread: Callable[[], Settings]) -> Callable[[], None]:
    def reload() -> None:
        try:
            settings = reread()
        except MailgateError as exc:  # a broken file must not take the daemon down
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        daemon.reload(settings)

    return reload
