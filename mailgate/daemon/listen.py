"""The SMTP and LMTP listeners of the daemon: their sockets, their sessions, the drain.

``mailgate serve`` opens these first (``daemon.boot``), with only what taking mail
needs — the settings, the metrics, rspamd's client, the VERP key and the group
committer — and none of the store's or the pipeline's modules: a restarted daemon
greets an MTA at once.  Until the runtime is built, the handlers read the ``Early``
parts; ``Listeners.adopt`` then hands them the runtime (so a SIGHUP reload reaches
them), starts the committer on the opened database and wakes the worker on every
message.  A session that reaches DATA before that waits for the commit of its own
message, as always: nothing is answered 250 before it is stored.

During a drain (SIGTERM) the listening sockets stay open but each new connection is
greeted with 421 4.3.2 and closed, and the handlers refuse a new MAIL likewise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from aiosmtpd.smtp import SMTP

from mailgate.clock import Clock, utcnow
from mailgate.config import Settings, parse_hostport
from mailgate.errors import MailgateError
from mailgate.ingest import lmtpsocket
from mailgate.ingest.committer import GroupCommitter
from mailgate.ingest.context import ListenerContext
from mailgate.ingest.scan import RspamdClient
from mailgate.ingest.smtp import SHUTTING_DOWN, IngestHandler, protocol_factory
from mailgate.replies import verp

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from mailgate.daemon.metrics import Metrics


class ListenError(MailgateError):
    """A listener cannot open its socket (the port is taken, or not ours to bind)."""


@contextlib.contextmanager
def listening(name: str, address: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        # asyncio words errno itself ("error while attempting to bind on …"): use the OS's.
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ListenError(f"cannot listen on {address} ({name}.listen): {why}") from exc


class Parts(ListenerContext, Protocol):
    """What the listeners read: the listener context, the whole metrics record (the
    listeners-up gauge) and the VERP key of bounces to our own mail."""

    @property
    def metrics(self) -> Metrics: ...
    @property
    def verp_key(self) -> bytes | None: ...


def make_scanner(settings: Settings) -> RspamdClient | None:
    spam = settings.spam
    if not spam.rspamd_url:
        return None
    return RspamdClient(spam.rspamd_url, spam.rspamd_timeout_ms / 1000)


def env_key(environ: Mapping[str, str], name: str) -> bytes | None:
    """The secret in the environment variable ``name`` (None when unnamed or unset)."""
    return environ[name].encode() if name and name in environ else None


@dataclass
class Early:
    """The listeners' parts before the runtime exists: built from the settings alone."""

    settings: Settings
    metrics: Metrics
    scanner: RspamdClient | None
    verp_key: bytes | None
    clock: Clock = utcnow

    @classmethod
    def build(cls, settings: Settings, metrics: Metrics, environ: Mapping[str, str]) -> Early:
        return cls(
            settings,
            metrics,
            make_scanner(settings),
            env_key(environ, settings.outbound.verp_secret_env),
        )

    @property
    def sessions(self) -> sessionmaker[Session]:
        # The listeners store through the committer, which waits for the database.
        raise RuntimeError("the database is not open yet")


def bounce_address_ok(parts: Parts, address: str) -> bool:
    """Whether ``address`` is the VERP return path of our own mail (``replies.verp``);
    the settings are read at each call, so a reload applies to open sessions too."""
    local = parts.settings.outbound.verp_local_part
    return verp.parse(address, local, parts.verp_key) is not None


class _Refuse(asyncio.Protocol):
    """What a new connection meets during the drain: 421, then the door closes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(f"{SHUTTING_DOWN}\r\n".encode())
        transport.close()


def _in_transaction(session: SMTP) -> bool:
    """True while a client is between MAIL and the end of DATA (or RSET)."""
    transport = session.transport
    if transport is None or transport.is_closing():
        return False
    envelope = session.envelope
    return envelope is not None and envelope.mail_from is not None


class Listeners:
    """The listening sockets, the sessions on them and the committer they share."""

    def __init__(self, parts: Parts, committer: GroupCommitter) -> None:
        self.parts = parts
        self.committer = committer
        self.draining = False
        self.ports: dict[str, int] = {}
        self.servers: list[asyncio.base_events.Server] = []
        self.handlers: list[IngestHandler] = []
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self._wake: Callable[[], None] = lambda: None
        self._socket_file: lmtpsocket.SocketFile | None = None

    async def open(self) -> None:
        """Bind every configured listener; ``ListenError`` names the one that failed."""
        loop = asyncio.get_running_loop()
        settings = self.parts.settings
        for name, listener, lmtp in (
            ("smtp", settings.smtp, False),
            ("lmtp", settings.lmtp, True),
        ):
            if not listener.listen:
                continue
            host, port = parse_hostport(listener.listen)
            factory, handler = protocol_factory(
                self.parts,
                lmtp,
                self._accepted,
                self.committer,
                bounce_address_ok=self._bounce_ok,
            )
            with listening(name, listener.listen):
                server = await loop.create_server(self._guard(factory), host, port)
            self.servers.append(server)
            self.handlers.append(handler)
            self.ports[name] = server.sockets[0].getsockname()[1]
        if settings.lmtp.socket:
            await self._open_socket(settings.lmtp.socket, int(settings.lmtp.socket_mode, 8))
        self.parts.metrics.up.set(len(self.servers))

    async def _open_socket(self, path: str, mode: int) -> None:
        """The LMTP listener on the Unix socket ``mailgate ingest`` delivers through."""
        factory, handler = protocol_factory(
            self.parts, True, self._accepted, self.committer, bounce_address_ok=self._bounce_ok
        )
        try:
            sock, self._socket_file = lmtpsocket.bind(path, mode)
        except OSError as exc:
            raise ListenError(
                f"cannot listen on {path} (lmtp.socket): {exc.strerror or exc}"
            ) from exc
        loop = asyncio.get_running_loop()
        self.servers.append(await loop.create_unix_server(self._guard(factory), sock=sock))
        self.handlers.append(handler)

    def adopt(
        self, parts: Parts, sessions: sessionmaker[Session], wake: Callable[[], None]
    ) -> None:
        """The runtime is built: read it from now on, store, and wake the worker."""
        self.parts = parts
        for handler in self.handlers:
            handler.rt = parts
        self._wake = wake
        self.committer.start(sessions)

    def _accepted(self) -> None:
        self._wake()

    def _bounce_ok(self, address: str) -> bool:
        return bounce_address_ok(self.parts, address)

    def _guard(self, factory: Callable[[], SMTP]) -> Callable[[], asyncio.Protocol]:
        def build() -> asyncio.Protocol:
            if self.draining:
                return _Refuse()
            session = factory()
            self._sessions.add(session)
            return session

        return build

    def drain(self) -> None:
        """New connections get 421; open ones may finish what they began."""
        self.draining = True
        for handler in self.handlers:
            handler.draining = True

    def busy(self) -> bool:
        """Whether a session is inside a transaction or a message is being stored."""
        sessions = any(_in_transaction(s) for s in list(self._sessions))
        return sessions or any(h.in_flight for h in self.handlers)

    def not_serving(self) -> int:
        return sum(not s.is_serving() for s in self.servers)

    def close(self) -> None:
        for server in self.servers:
            server.close()
        if self._socket_file is not None:
            self._socket_file.remove()
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()

    async def wait_closed(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=1)
