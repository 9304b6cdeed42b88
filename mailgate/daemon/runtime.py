"""What every entry point shares once it is wired: settings, database, clock, outgoing
transport, the metrics registry of this process, the DKIM signer and the secrets.

A plain record: ``daemon.wiring`` builds it (the CLI, the daemon, tests with their own
parts) and it is then passed explicitly; nothing in mailgate reads process-global state.
The layers below the daemon never name this class: each declares, as a protocol, the
few attributes it reads (``ingest.context``, ``replies.context``, ``tickets.context``),
and this record satisfies them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailgate.clock import Clock, utcnow
from mailgate.config import Settings
from mailgate.daemon.metrics import Metrics
from mailgate.parse import ParseLimits
from mailgate.pipeline.facts import Analyzer, InlineAnalyzer
from mailgate.replies.render import Renderer
from mailgate.replies.sender import RelayHealth, Transport
from mailgate.replies.signing import Signer
from mailgate.store import keys
from mailgate.verify.authn import DnsFunc
from mailgate.verify.dnscache import cached_txt
from mailgate.verify.external import ExternalDirectory


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    renderer: Renderer
    transport: Transport
    signer: Signer
    verp_key: bytes | None = None  # None: automatic mail goes out with a null sender
    # From threading.secret_env; None: the install key kept in the database is used.
    configured_threading_key: bytes | None = None
    # IMAP passwords named by an account's password_env, by account name (read at wiring
    # time; an account with a password_file reads its file at every connect).
    imap_passwords: Mapping[str, str] = field(default_factory=dict, repr=False)
    clock: Clock = utcnow
    # DNS TXT lookups for DKIM keys and DMARC policies (dkimpy's signature); tests
    # inject a fake resolver.
    dns: DnsFunc = cached_txt
    # The company's own customer database, when [directory] url is set.
    external: ExternalDirectory | None = None
    metrics: Metrics = field(default_factory=Metrics)
    # Where the facts stage runs: worker processes under a budget, or inline.
    analyzer: Analyzer = field(default_factory=InlineAnalyzer)
    # Whether the relay could be reached at all, as the outbox last saw it.
    relay_health: RelayHealth = field(default_factory=RelayHealth)
    _install_key: bytes | None = field(default=None, repr=False)

    def threading_key(self, session: Session) -> bytes:
        """The key of reply tokens: configured, else this install's, made on first use."""
        if self.configured_threading_key is not None:
            return self.configured_threading_key
        if self._install_key is None:
            # Cached only once committed: a key made in a transaction that rolls back
            # must not sign mail that a later key could not verify.
            self._install_key = keys.read(session, "threading")
            if self._install_key is None:
                return keys.get_or_create(session, "threading", self.clock())
        return self._install_key

    @property
    def parse_limits(self) -> ParseLimits:
        p = self.settings.processing
        return ParseLimits(max_header_bytes=p.max_header_bytes, max_mime_depth=p.max_mime_depth)

    def close(self) -> None:
        self.analyzer.close()
        self.engine.dispose()
        if self.external is not None:
            self.external.close()
