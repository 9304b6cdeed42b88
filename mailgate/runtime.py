"""The wiring every entry point shares: settings, database, clock, outgoing transport,
DKIM signer and VERP key.

Built once by the CLI (``Runtime.create``) or by a test with its own parts, then passed
explicitly; nothing in mailgate reads process-global state.  Secrets named in the
config (``outbound.verp_secret_env``) are read from the environment here, once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailgate.clock import Clock, utcnow
from mailgate.config import Settings, parse_hostport
from mailgate.parse import ParseLimits
from mailgate.replies.render import Renderer
from mailgate.replies.sender import MaildirTransport, SmtpRelayTransport, Transport
from mailgate.replies.signing import Signer
from mailgate.store.db import make_engine, make_sessions


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    renderer: Renderer
    transport: Transport
    signer: Signer
    verp_key: bytes | None = None  # None: automatic mail goes out with a null sender
    clock: Clock = utcnow

    @classmethod
    def create(
        cls,
        settings: Settings,
        clock: Clock = utcnow,
        environ: Mapping[str, str] | None = None,
    ) -> Runtime:
        environ = os.environ if environ is None else environ
        secret_env = settings.outbound.verp_secret_env
        verp_key = environ[secret_env].encode() if secret_env and secret_env in environ else None
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
            clock=clock,
        )

    @property
    def parse_limits(self) -> ParseLimits:
        p = self.settings.processing
        return ParseLimits(max_header_bytes=p.max_header_bytes, max_mime_depth=p.max_mime_depth)

    def close(self) -> None:
        self.engine.dispose()


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
