"""What the webhooks read from the runtime they are handed, as a protocol: the settings
(the ``[[webhooks]]`` tables), the time and the database.  The daemon's ``Runtime``
record fits; this package never imports the daemon.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from mailgate.clock import Clock
from mailgate.config import Settings


class WebhookContext(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def sessions(self) -> sessionmaker[Session]: ...
