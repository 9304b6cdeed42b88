"""What the ingest layer reads from the runtime it is handed, as protocols.

The listeners and the IMAP reader store mail and nothing else: they need the database,
the settings and the time, plus, for the listeners, their counter and, for the IMAP
reader, the engine (its folder leases) and the passwords read at wiring time; the
listeners also ask rspamd through the scanner the daemon hands them (``ingest.scan``).  Naming
only those keeps ingest free of the daemon that wires them; the daemon's ``Runtime``
record fits each protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    # Names only: the listeners' parts are declared before SQLAlchemy is loaded.
    from prometheus_client import Counter
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from mailgate.clock import Clock
    from mailgate.config import Settings
    from mailgate.ingest.scan import RspamdClient


class IngestContext(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def sessions(self) -> sessionmaker[Session]: ...


class ListenerMetrics(Protocol):
    @property
    def ingest(self) -> Counter: ...
    @property
    def spam_refused(self) -> Counter: ...
    @property
    def spam_unscanned(self) -> Counter: ...


class ListenerContext(IngestContext, Protocol):
    """What the SMTP and LMTP listeners read: ``IngestContext`` and their counter."""

    @property
    def metrics(self) -> ListenerMetrics: ...
    @property
    def scanner(self) -> RspamdClient | None: ...


class ImapContext(IngestContext, Protocol):
    """What the IMAP reader reads: ``IngestContext``, the engine its folder leases
    connect with, and each account's password from its ``password_env``."""

    @property
    def engine(self) -> Engine: ...
    @property
    def imap_passwords(self) -> Mapping[str, str]: ...
