"""Test parts that are real servers or small fakes: a relay sink (a real aiosmtpd
SMTP server on loopback), the daemon on its own loop in a thread, a controllable clock,
and message builders."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from aiosmtpd.controller import Controller

from mailgate.app import Daemon
from mailgate.runtime import Runtime


class FakeDns:
    """The only DNS tests see: TXT records by name (dkimpy's ``dnsfunc`` signature)."""

    def __init__(self, records: dict[str, str] | None = None) -> None:
        self.records = dict(records or {})
        self.queries: list[str] = []

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        key = name.decode().rstrip(".").lower()
        self.queries.append(key)
        value = self.records.get(key)
        return value.encode() if value is not None else None


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class SinkMessage:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class RelaySink:
    """A real SMTP server collecting what mailgate relays; can refuse on demand."""

    messages: list[SinkMessage] = field(default_factory=list)
    reply: str = "250 2.0.0 OK"
    port: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if not self.reply.startswith("250"):
            return self.reply
        with self._cond:
            self.messages.append(
                SinkMessage(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
            )
            self._cond.notify_all()
        return self.reply

    def wait_for(self, count: int, timeout: float = 10) -> list[SinkMessage]:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.messages) >= count, timeout)
        assert ok, f"relay sink got {len(self.messages)} messages, expected {count}"
        return list(self.messages)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink(port: int | None = None) -> tuple[RelaySink, Controller, int]:
    """A relay sink on ``port`` (a free one by default); aiosmtpd cannot bind port 0."""
    sink = RelaySink()
    port = port or free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    return sink, controller, port


class DaemonThread:
    """The real daemon on its own event loop, for tests that speak SMTP/LMTP to it."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.daemon: Daemon | None = None

    def __enter__(self) -> DaemonThread:
        self.thread.start()

        async def start() -> Daemon:
            daemon = Daemon(self.rt)
            await daemon.start()
            return daemon

        self.daemon = asyncio.run_coroutine_threadsafe(start(), self.loop).result(15)
        return self

    def port(self, name: str) -> int:
        assert self.daemon is not None
        return self.daemon.ports[name]

    def __exit__(self, *exc: object) -> None:
        if self.daemon is not None:
            asyncio.run_coroutine_threadsafe(self.daemon.stop(5), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def wait_until(predicate: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    """Poll a DB-backed predicate (the daemon works in other threads) until true."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def make_mail(
    *,
    sender: str = "Jan Kowalski <jan@customer.example>",
    to: str = "support@helpdesk.example",
    subject: str = "Serwer nie odpowiada",
    body: str = "Dzień dobry,\nmój serwer 192.0.2.10 nie odpowiada od rana.\nJan\n",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
    msg["Message-ID"] = message_id or make_msgid(domain="customer.example")
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes(policy=policy.SMTP)  # CRLF, as it travels over SMTP


class TcpProxy:
    """A loopback TCP forwarder that can be cut, to make a real server unreachable.

    With ``cut_after`` it cuts every open connection by itself once that many bytes
    have come back from the server (once; later connections pass freely), which lands
    the cut in the middle of whatever the client was reading.
    """

    def __init__(self, target_host: str, target_port: int, cut_after: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.cut_after = cut_after
        self.was_cut = threading.Event()
        self._downstream = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b, down in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pipe, args=(a, b, down), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, downstream: bool) -> None:
        try:
            while data := src.recv(65536):
                if downstream and self._over_budget(len(data)):
                    self.cut()
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _over_budget(self, size: int) -> bool:
        with self._lock:
            if self.cut_after is None:
                return False
            self._downstream += size
            if self._downstream <= self.cut_after:
                return False
            self.cut_after = None
            return True

    def cut(self) -> None:
        """Cut the open connections; new ones are still accepted."""
        self.was_cut.set()  # before the cut, so whoever sees the EOF also sees this
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would
            # leave the kernel socket listening until that accept() returns.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        self.cut()
