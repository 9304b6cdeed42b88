"""The ``mailgate`` command group and what every command shares.

``main`` is the click group (its one option is ``--config``); every command module of
this package adds its commands to it.  ``Context`` loads the settings once, lazily, and
opens the runtime and database sessions a command needs.

Exit codes follow sysexits(3) where an MTA or a script reads them: 0 done, 1 a named
thing does not exist or a check failed, 65 (EX_DATAERR) the input is unusable,
75 (EX_TEMPFAIL) try again later, 78 (EX_CONFIG) bad config.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mailgate.config import Settings, load
from mailgate.daemon import logs
from mailgate.daemon.runtime import Runtime
from mailgate.errors import ConfigError
from mailgate.ingest.pipe import EX_DATAERR, EX_TEMPFAIL
from mailgate.store.models import Ticket
from mailgate.tickets.documents import iso

__all__ = ["EX_CONFIG", "EX_DATAERR", "EX_TEMPFAIL", "Context", "iso", "main", "pass_ctx"]

EX_CONFIG = 78


class Context:
    """What a command gets from the group: the settings (loaded on first use; a bad
    config exits 78 listing every problem) and the runtime built from them."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load(self.config_path)
            except ConfigError as exc:
                click.echo(str(exc), err=True)
                sys.exit(EX_CONFIG)
            logs.configure(self._settings.log)
        return self._settings

    def runtime(self) -> Runtime:
        return Runtime.create(self.settings)

    @contextmanager
    def session(self, write: bool = False) -> Iterator[tuple[Runtime, Session]]:
        """A runtime and one session (a transaction when ``write``), closed afterwards."""
        rt = self.runtime()
        try:
            with rt.sessions.begin() if write else rt.sessions() as session:
                yield rt, session
        finally:
            rt.close()


pass_ctx = click.make_pass_decorator(Context)


@click.group()
@click.option(
    "--config",
    "config_path",
    envvar="MAILGATE_CONFIG",
    type=click.Path(dir_okay=False),
    help="TOML config file (default: built-in defaults; env MAILGATE_CONFIG).",
)
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """mailgate — inbound e-mail to ticket gateway."""
    ctx.obj = Context(config_path)


def require_schema(rt: Runtime) -> None:
    """Exit 75 with a hint unless the database exists and has mailgate's tables."""
    try:
        with rt.sessions() as session:
            session.scalar(select(func.count()).select_from(Ticket))
    except SQLAlchemyError as exc:
        click.echo(
            f"mailgate: the database is not ready ({exc.__class__.__name__}); "
            "run `mailgate db upgrade` first",
            err=True,
        )
        sys.exit(EX_TEMPFAIL)
