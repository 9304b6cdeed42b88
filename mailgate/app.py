"""The daemon: listeners, the IMAP pollers, the processing worker, the outbox sender,
the scheduler and the health endpoints.

Everything but the IMAP pollers runs on one asyncio loop; database work runs in threads
(``asyncio.to_thread``) so the SMTP sessions never wait on it.  imapclient is blocking,
so each polled folder has a thread of its own (``ingest.imap``) that wakes the worker
through the loop.  ``accept`` wakes the worker; the worker wakes the outbox; an APScheduler job
wakes both every ``processing.sweep_seconds`` to pick up retries whose time has come
and messages whose worker died.  ``stop`` closes the listeners and stops the
pollers first, waits for sessions that are storing a message, then lets the worker
finish its current message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import text

from mailgate import pipeline
from mailgate.config import parse_hostport
from mailgate.errors import MailgateError
from mailgate.ingest.imap import ImapService
from mailgate.ingest.smtp import IngestHandler, protocol_factory
from mailgate.replies import outbox
from mailgate.runtime import Runtime

log = logging.getLogger(__name__)

BATCH = 20


class Daemon:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.ports: dict[str, int] = {}
        self._servers: list[asyncio.base_events.Server] = []
        self._handlers: list[IngestHandler] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._work = asyncio.Event()
        self._send = asyncio.Event()
        self._stopping = asyncio.Event()
        self._scheduler: AsyncIOScheduler | None = None
        self._http: web.AppRunner | None = None
        self._worker = pipeline.Worker(rt)
        self.imap: ImapService | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        settings = self.rt.settings
        for name, listener, lmtp in (
            ("smtp", settings.smtp, False),
            ("lmtp", settings.lmtp, True),
        ):
            if not listener.listen:
                continue
            host, port = parse_hostport(listener.listen)
            factory, handler = protocol_factory(self.rt, lmtp, self._work.set)
            server = await loop.create_server(factory, host, port)
            self._servers.append(server)
            self._handlers.append(handler)
            self.ports[name] = server.sockets[0].getsockname()[1]
            log.info("%s listening on %s:%s", name, host, self.ports[name])
        if settings.http.listen:
            await self._start_http()
        if settings.imap:
            self.imap = ImapService(self.rt, self._wake_from_thread(loop))
            self.imap.start()
        self._tasks = [
            asyncio.create_task(self._loop("worker", self._work, self._process)),
            asyncio.create_task(self._loop("outbox", self._send, self._flush)),
        ]
        self._scheduler = AsyncIOScheduler(event_loop=loop)
        self._scheduler.add_job(
            self._sweep,
            "interval",
            seconds=settings.processing.sweep_seconds,
            max_instances=1,
            coalesce=True,
        )
        self._scheduler.start()
        self._sweep()  # whatever a previous run left behind

    def _wake_from_thread(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        def wake() -> None:
            # The loop may already be closed when a poller finishes during shutdown.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._work.set)

        return wake

    def _sweep(self) -> None:
        self._work.set()
        self._send.set()

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
            self._send.set()
        return done

    async def _flush(self) -> int:
        return await asyncio.to_thread(outbox.flush, self.rt, BATCH)

    async def _start_http(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._http = web.AppRunner(app, access_log=None)
        await self._http.setup()
        host, port = parse_hostport(self.rt.settings.http.listen)
        site = web.TCPSite(self._http, host, port)
        await site.start()
        self.ports["http"] = int(self._http.addresses[0][1])

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        def probe() -> None:
            with self.rt.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        try:
            await asyncio.wait_for(asyncio.to_thread(probe), timeout=5)
        except Exception as exc:  # noqa: BLE001 -- any failure means "not ready"; say why
            return web.Response(status=503, text=f"database: {exc}\n")
        return web.Response(text="ready\n")

    async def stop(self, timeout: float = 30) -> None:
        for server in self._servers:
            server.close()
        if self.imap is not None:
            await asyncio.to_thread(self.imap.stop, timeout)
        deadline = asyncio.get_running_loop().time() + timeout
        while any(h.in_flight for h in self._handlers):
            if asyncio.get_running_loop().time() > deadline:
                log.warning("stop: giving up on in-flight SMTP sessions")
                break
            await asyncio.sleep(0.05)
        self._stopping.set()
        self._work.set()
        self._send.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks), timeout=timeout)
        for task in self._tasks:
            task.cancel()
        if self._http is not None:
            await self._http.cleanup()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=1)


async def serve(rt: Runtime) -> None:
    """Run until SIGTERM or SIGINT."""
    daemon = Daemon(rt)
    await daemon.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("mailgate ready: %s", ", ".join(f"{k}={v}" for k, v in daemon.ports.items()))
    await stop.wait()
    log.info("stopping")
    await daemon.stop()
