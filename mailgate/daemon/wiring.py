"""Building the runtime: every part the entry points share, made from the settings.

The CLI, the daemon, the benchmarks and the tests call ``build`` once and pass the
``Runtime`` record on.  Secrets named in the config (``outbound.verp_secret_env``,
``threading.secret_env``, ``outbound.password_env``, an IMAP account's
``password_env``) are read from the environment here, once, and handed to the parts
that use them; nothing below the daemon reads the environment.  ``reload`` (SIGHUP)
rebuilds what new settings change without new sockets or a new database.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from sqlalchemy import Engine

from mailgate.clock import Clock, utcnow
from mailgate.config import Settings, parse_hostport
from mailgate.daemon.listen import env_key, make_scanner
from mailgate.daemon.metrics import Metrics
from mailgate.daemon.runtime import Runtime
from mailgate.errors import ConfigError
from mailgate.pipeline.facts import Analyzer, InlineAnalyzer, PoolAnalyzer
from mailgate.replies.render import Renderer
from mailgate.replies.sender import MaildirTransport, SmtpRelayTransport, Transport
from mailgate.replies.signing import Signer
from mailgate.store.db import make_engine, make_sessions
from mailgate.verify.authn import DnsFunc
from mailgate.verify.dnscache import cached_txt, no_dns
from mailgate.verify.external import ExternalDirectory


def build(
    settings: Settings,
    clock: Clock = utcnow,
    dns: DnsFunc | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    engine: Engine | None = None,
    metrics: Metrics | None = None,
) -> Runtime:
    """Every part, from ``settings`` and the secrets in ``environ`` (the process's).

    ``serve`` passes the engine it has opened and checked and the metrics its
    listeners already count into (``daemon.boot``)."""
    environ = os.environ if environ is None else environ
    imap_passwords = _imap_passwords(settings, environ)
    engine = engine or make_engine(settings.database)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=make_sessions(engine),
        renderer=Renderer(settings),
        transport=make_transport(settings, environ),
        signer=Signer(settings.dkim),
        verp_key=env_key(environ, settings.outbound.verp_secret_env),
        configured_threading_key=env_key(environ, settings.threading.secret_env),
        imap_passwords=imap_passwords,
        clock=clock,
        dns=dns or (cached_txt if settings.verify.dns_lookups else no_dns),
        external=ExternalDirectory(settings.directory, clock) if settings.directory.url else None,
        analyzer=make_analyzer(settings),
        scanner=make_scanner(settings),
        metrics=metrics or Metrics(),
    )


def reload(rt: Runtime, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """Take new settings (SIGHUP): templates, relay and DKIM keys are rebuilt.

    The database and listeners are not touched; the daemon keeps their old values.
    """
    environ = os.environ if environ is None else environ
    rt.settings = settings
    rt.renderer = Renderer(settings)
    rt.transport = make_transport(settings, environ)
    rt.signer = Signer(settings.dkim)
    rt.scanner = make_scanner(settings)


def make_analyzer(settings: Settings) -> Analyzer:
    p = settings.processing
    if p.parse_workers <= 0:
        return InlineAnalyzer()
    # One worker per core at most: a second process on one core only adds memory.
    workers = min(p.parse_workers, os.cpu_count() or 1)
    return PoolAnalyzer(workers, p.parse_seconds, p.parse_memory_mb)


def make_transport(settings: Settings, environ: Mapping[str, str] | None = None) -> Transport:
    out = settings.outbound
    if out.relay:
        environ = os.environ if environ is None else environ
        host, port = parse_hostport(out.relay)
        return SmtpRelayTransport(
            host,
            port,
            tls=out.tls,
            timeout=out.timeout,
            username=out.username,
            # As before: an unset variable logs in with an empty password (the config
            # check refuses to start without it).
            password=environ.get(out.password_env, "") if out.password_env else "",
            local_hostname=settings.smtp.hostname,
        )
    return MaildirTransport(out.maildir)


def _imap_passwords(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """Each account's password_env, read now; one that is unset stops the start."""
    passwords: dict[str, str] = {}
    missing: list[str] = []
    for account in settings.imap:
        if not account.password_env:
            continue
        value = environ.get(account.password_env)
        if value is None:
            missing.append(f"environment variable {account.password_env} is not set")
        else:
            passwords[account.name] = value
    if missing:
        raise ConfigError(missing)
    return passwords
