"""The wiring every entry point shares: settings, database, clock, outgoing transport,
the metrics registry of this process, the DKIM signer and the VERP key.

Built once by the CLI (``Runtime.create``) or by a test with its own parts, then passed
explicitly; nothing in mailgate reads process-global state.  Secrets named in the
config (``outbound.verp_secret_env``) are read from the environment here, once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from dkim.dnsplug import get_txt
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailgate.clock import Clock, utcnow
from mailgate.config import Settings, parse_hostport
from mailgate.daemon.metrics import Metrics
from mailgate.parse import ParseLimits
from mailgate.pipeline.facts import Analyzer, InlineAnalyzer, PoolAnalyzer
from mailgate.replies.render import Renderer
from mailgate.replies.sender import (
    MaildirTransport,
    RelayHealth,
    SmtpRelayTransport,
    Transport,
)
from mailgate.replies.signing import Signer
from mailgate.store import keys
from mailgate.store.db import make_engine, make_sessions
from mailgate.verify.authn import DnsFunc
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
    clock: Clock = utcnow
    # DNS TXT lookups for DKIM keys and DMARC policies (dkimpy's signature); tests
    # inject a fake resolver.
    dns: DnsFunc = get_txt
    # The company's own customer database, when [directory] url is set.
    external: ExternalDirectory | None = None
    metrics: Metrics = field(default_factory=Metrics)
    # Where the facts stage runs: worker processes under a budget, or inline.
    analyzer: Analyzer = field(default_factory=InlineAnalyzer)
    # Whether the relay could be reached at all, as the outbox last saw it.
    relay_health: RelayHealth = field(default_factory=RelayHealth)
    _install_key: bytes | None = field(default=None, repr=False)

    @classmethod
    def create(
        cls,
        settings: Settings,
        clock: Clock = utcnow,
        dns: DnsFunc | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Runtime:
        environ = os.environ if environ is None else environ
        secret_env = settings.outbound.verp_secret_env
        verp_key = environ[secret_env].encode() if secret_env and secret_env in environ else None
        thread_env = settings.threading.secret_env
        thread_key = environ[thread_env].encode() if thread_env and thread_env in environ else None
        signer = Signer(settings.dkim)
        engine = make_engine(settings.database)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessions(engine),
            renderer=Renderer(settings),
            transport=make_transport(settings),
            signer=signer,
            verp_key=verp_key,
            configured_threading_key=thread_key,
            clock=clock,
            dns=dns or (get_txt if settings.verify.dns_lookups else no_dns),
            external=ExternalDirectory(settings.directory, clock)
            if settings.directory.url
            else None,
            analyzer=make_analyzer(settings),
        )

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

    def reload(self, settings: Settings) -> None:
        """Take new settings (SIGHUP): templates, relay and DKIM keys are rebuilt.

        The database and listeners are not touched; the daemon keeps their old values.
        """
        self.settings = settings
        self.renderer = Renderer(settings)
        self.transport = make_transport(settings)
        self.signer = Signer(settings.dkim)

    def close(self) -> None:
        self.analyzer.close()
        self.engine.dispose()
        if self.external is not None:
            self.external.close()


def make_analyzer(settings: Settings) -> Analyzer:
    p = settings.processing
    if p.parse_workers <= 0:
        return InlineAnalyzer()
    return PoolAnalyzer(p.parse_workers, p.parse_seconds, p.parse_memory_mb)


def no_dns(name: bytes, timeout: float = 0) -> None:
    """The resolver when ``verify.dns_lookups`` is off: every name is unknown."""
    return None


def make_transport(settings: Settings) -> Transport:
    out = settings.outbound
    if out.relay:
        host, port = parse_hostport(out.relay)
        return SmtpRelayTransport(
            host,
            port,
            tls=out.tls,
            timeout=out.timeout,
            username=out.username,
            password_env=out.password_env,
            local_hostname=settings.smtp.hostname,
        )
    return MaildirTransport(out.maildir)
