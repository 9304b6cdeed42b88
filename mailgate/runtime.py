"""The wiring every entry point shares: settings, database, clock, outgoing transport,
and the metrics registry of this process.

Built once by the CLI (``Runtime.create``) or by a test with its own parts, then passed
explicitly; nothing in mailgate reads process-global state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dkim.dnsplug import get_txt
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailgate.clock import Clock, utcnow
from mailgate.config import Settings, parse_hostport
from mailgate.metrics import Metrics
from mailgate.parse import ParseLimits
from mailgate.replies.render import Renderer
from mailgate.replies.sender import MaildirTransport, SmtpRelayTransport, Transport
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
    clock: Clock = utcnow
    # DNS TXT lookups for DKIM keys and DMARC policies (dkimpy's signature); tests
    # inject a fake resolver.
    dns: DnsFunc = get_txt
    # The company's own customer database, when [directory] url is set.
    external: ExternalDirectory | None = None
    metrics: Metrics = field(default_factory=Metrics)

    @classmethod
    def create(
        cls, settings: Settings, clock: Clock = utcnow, dns: DnsFunc | None = None
    ) -> Runtime:
        engine = make_engine(settings.database)
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessions(engine),
            renderer=Renderer(settings),
            transport=make_transport(settings),
            clock=clock,
            dns=dns or (get_txt if settings.verify.dns_lookups else no_dns),
            external=ExternalDirectory(settings.directory, clock)
            if settings.directory.url
            else None,
        )

    @property
    def parse_limits(self) -> ParseLimits:
        p = self.settings.processing
        return ParseLimits(max_header_bytes=p.max_header_bytes, max_mime_depth=p.max_mime_depth)

    def reload(self, settings: Settings) -> None:
        """Take new settings (SIGHUP): templates and the relay are rebuilt from them.

        The database and listeners are not touched; the daemon keeps their old values.
        """
        self.settings = settings
        self.renderer = Renderer(settings)
        self.transport = make_transport(settings)

    def close(self) -> None:
        self.engine.dispose()
        if self.external is not None:
            self.external.close()


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
