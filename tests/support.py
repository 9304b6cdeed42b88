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

from mailgate.daemon.app import Daemon
from mailgate.daemon.runtime import Runtime


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

    def __init__(self, rt: Runtime, environ: dict[str, str] | None = None) -> None:
        self.rt = rt
        self.environ = environ
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.daemon: Daemon | None = None

    def __enter__(self) -> DaemonThread:
        self.thread.start()

        async def start() -> Daemon:
            daemon = Daemon(self.rt, self.environ)
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


@dataclass
class ProxyFault:
    """A fault the proxy injected: its kind and the last command the client had sent."""

    kind: str  # cut | stall
    command: bytes
    at: float  # monotonic


@dataclass
class ProxyLink:
    """One proxied connection: the client's socket and ours to the server."""

    client: socket.socket
    upstream: socket.socket
    stalled: bool = False
    command: bytes = b""  # the last line the client sent
    after_stall: list[bytes] = field(default_factory=list)  # lines sent into a stall

    def close(self) -> None:
        for s in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


class TcpProxy:
    """A loopback TCP forwarder that can be cut or stalled, to break a real server's link.

    ``arm(kind, after=n)`` injects one fault once ``n`` more bytes have come back from
    the server (exactly that many reach the client), which lands it in the middle of
    whatever the client was reading; ``arm(kind, on=word)`` injects it right after the
    server has been sent a client line containing ``word``, so the server acts on a
    command whose answer the client never gets.  A *cut* closes both sides of that
    connection.  A *stall* turns it into a black hole: the proxy goes on reading both
    sides but forwards nothing, so the client hears silence until its own timeout gives
    up, and the server hears of it only when the client hangs up.  Connections opened
    later pass freely.  ``cut_after`` arms one cut from the start.
    """

    def __init__(self, target_host: str, target_port: int, cut_after: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.was_cut = threading.Event()
        self.faults: list[ProxyFault] = []
        self.stalled: list[ProxyLink] = []
        # (kind, bytes still to let through, client word to wait for)
        self._armed: tuple[str, int, bytes | None] | None = None
        self._fired = threading.Condition()
        self._listener: socket.socket | None = None
        self._links: list[ProxyLink] = []
        self._lock = threading.Lock()
        if cut_after is not None:
            self.arm("cut", after=cut_after)

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def arm(self, kind: str, *, after: int = 0, on: bytes | None = None) -> None:
        """Inject a ``cut`` or a ``stall`` after ``after`` more bytes from the server, or
        (with ``on``) after the client's next line that contains ``on``."""
        assert kind in ("cut", "stall"), kind
        with self._lock:
            self._armed = (kind, after, on)

    def wait_fired(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` faults have been injected in all."""
        with self._fired:
            return self._fired.wait_for(lambda: len(self.faults) >= count, timeout)

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
            upstream.settimeout(None)  # the pipes block in recv; the client side times out
            link = ProxyLink(client, upstream)
            with self._lock:
                self._links.append(link)
            for downstream in (False, True):
                threading.Thread(target=self._pipe, args=(link, downstream), daemon=True).start()

    def _pipe(self, link: ProxyLink, downstream: bool) -> None:
        src, dst = (link.upstream, link.client) if downstream else (link.client, link.upstream)
        try:
            while data := src.recv(65536):
                if link.stalled:
                    self._note_command(link, data, downstream)
                    continue  # swallowed; a black hole spends no armed budget
                if downstream:
                    kind, data = self._budget(data)
                    dst.sendall(data)
                else:
                    kind = self._on_command(link, data)
                    # Swallow the answer before the server can send it: it acts on the
                    # command, the client never hears so.
                    link.stalled = kind is not None
                    dst.sendall(data)
                if kind == "cut":
                    self._record(link, kind)
                    self.was_cut.set()  # before the cut, so whoever sees the EOF sees this
                    return
                if kind == "stall":
                    link.stalled = True
                    self._record(link, kind)
        except OSError:
            pass
        finally:
            link.close()
            with self._lock:
                if link in self._links:
                    self._links.remove(link)

    @staticmethod
    def _note_command(link: ProxyLink, data: bytes, downstream: bool) -> list[bytes]:
        if downstream:
            return []
        # Long lines (a UID set) keep both ends: the tag and verb, and what is fetched.
        lines = [
            line if len(line) <= 200 else line[:100] + b"..." + line[-100:]
            for line in data.split(b"\r\n")
            if line.strip()
        ]
        if link.stalled:
            link.after_stall.extend(lines)
        elif lines:
            link.command = lines[-1]
        return lines

    def _on_command(self, link: ProxyLink, data: bytes) -> str | None:
        """The fault that fires on what the client just sent (if any)."""
        lines = self._note_command(link, data, downstream=False)
        with self._lock:
            kind, _, word = self._armed or ("", 0, None)
            if word is None or not any(word in line for line in lines):
                return None
            self._armed = None
            return kind

    def _budget(self, data: bytes) -> tuple[str | None, bytes]:
        """What of ``data`` may pass, and the fault that fires on it (if any)."""
        with self._lock:
            if self._armed is None or self._armed[2] is not None:
                return None, data
            kind, left, _ = self._armed
            if len(data) <= left:
                self._armed = (kind, left - len(data), None)
                return None, data
            self._armed = None
            return kind, data[:left]

    def _record(self, link: ProxyLink, kind: str) -> None:
        with self._fired:
            self.faults.append(ProxyFault(kind, link.command, time.monotonic()))
            if kind == "stall":
                self.stalled.append(link)
            self._fired.notify_all()

    def stall(self) -> None:
        """Stall the open connections now (see ``arm``); new ones pass freely."""
        with self._lock:
            links = [link for link in self._links if not link.stalled]
            for link in links:
                link.stalled = True
        for link in links:
            self._record(link, "stall")

    def cut(self) -> None:
        """Cut the open connections; new ones are still accepted."""
        self.was_cut.set()  # before the cut, so whoever sees the EOF also sees this
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()

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
