"""What the replies layer reads from the runtime it is handed, as protocols.

Queueing a mail (``notify.send``, ``outbox.enqueue``) and sending the queue
(``outbox.Dispatcher``, ``outbox.flush``) each name only the parts they use, so this
layer never imports the daemon that wires those parts; the daemon's ``Runtime`` record
fits both, and mypy checks that wherever one is passed.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import Counter, Histogram
from sqlalchemy.orm import Session, sessionmaker

from mailgate.clock import Clock
from mailgate.config import Settings
from mailgate.replies.render import Renderer
from mailgate.replies.sender import RelayHealth, Transport
from mailgate.replies.signing import Signer


class Configured(Protocol):
    """The settings and the time: what every part of this layer reads."""

    @property
    def settings(self) -> Settings: ...
    @property
    def clock(self) -> Clock: ...


class QueueContext(Configured, Protocol):
    """What rendering and queueing a mail reads: templates, keys, limits, the time."""

    @property
    def renderer(self) -> Renderer: ...
    @property
    def verp_key(self) -> bytes | None: ...
    def threading_key(self, session: Session) -> bytes: ...


class OutboxMetrics(Protocol):
    """The counters the outbox moves once an attempt is recorded."""

    @property
    def outbox(self) -> Counter: ...
    @property
    def receipt_to_ack(self) -> Histogram: ...


class SendContext(Configured, Protocol):
    """What sending the queue reads: the database, the relay and its health, DKIM."""

    @property
    def sessions(self) -> sessionmaker[Session]: ...
    @property
    def transport(self) -> Transport: ...
    @property
    def signer(self) -> Signer: ...
    @property
    def relay_health(self) -> RelayHealth: ...
    @property
    def metrics(self) -> OutboxMetrics: ...
