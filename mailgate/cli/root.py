"""The ``mailgate`` command group and what every command shares.

``main`` is the click group (its options: ``--config``, ``--version``); every command
module of this package adds its commands to it, and ``accept_config_anywhere`` then
gives each command its own ``--config`` so it may follow the subcommand too.
``Context`` loads the settings once, lazily, and opens the runtime and database
sessions a command needs — after checking that the database holds this release's
schema, so an unmigrated database is one line naming ``mailgate db upgrade``.

Exit codes follow sysexits(3) where an MTA or a script reads them: 0 done, 1 a named
thing does not exist, is in a state the command cannot act on, or a check failed,
64 (EX_USAGE) a required option is missing, 65 (EX_DATAERR) the input is unusable,
66 (EX_NOINPUT) an input is not what was promised, 67 (EX_NOUSER) an unknown recipient,
69 (EX_UNAVAILABLE) a listening port is taken, 75 (EX_TEMPFAIL) try again later (the
database is unreachable or not migrated), 78 (EX_CONFIG) bad config.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.config import Settings, load
from mailgate.daemon import logs, wiring
from mailgate.daemon.runtime import Runtime
from mailgate.errors import ConfigError
from mailgate.ingest.pipe import EX_DATAERR, EX_NOINPUT, EX_NOUSER, EX_TEMPFAIL, EX_USAGE
from mailgate.store import migrate
from mailgate.store.models import InboundMessage, OutboxMessage
from mailgate.tickets.documents import iso

__all__ = [
    "EX_CONFIG",
    "EX_DATAERR",
    "EX_NOINPUT",
    "EX_NOUSER",
    "EX_TEMPFAIL",
    "EX_UNAVAILABLE",
    "EX_USAGE",
    "Context",
    "fail",
    "iso",
    "main",
    "pass_ctx",
    "pick",
]

EX_UNAVAILABLE = 69
EX_CONFIG = 78


def fail(message: str, code: int = 1) -> NoReturn:
    """End the command with one line on standard error and ``code``."""
    click.echo(f"mailgate: {message}", err=True)
    sys.exit(code)


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

    def runtime(self, *, schema: bool = True) -> Runtime:
        """The runtime of this command; with ``schema`` (every command but ``db upgrade``
        and ``check``) it exits 75 unless the database is reachable and migrated."""
        rt = wiring.build(self.settings)
        if schema:
            problem = migrate.refusal(rt.engine)
            if problem is not None:
                rt.close()
                fail(problem, EX_TEMPFAIL)
        return rt

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

CONFIG_HELP = "TOML config file (default: built-in defaults; env MAILGATE_CONFIG)."


@click.group()
@click.option(
    "--config",
    "config_path",
    envvar="MAILGATE_CONFIG",
    type=click.Path(dir_okay=False),
    help=CONFIG_HELP,
)
@click.version_option(package_name="mailgate", prog_name="mailgate")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """mailgate — inbound e-mail to ticket gateway."""
    ctx.obj = Context(config_path)


def _late_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.find_object(Context).config_path = value  # type: ignore[union-attr]


def accept_config_anywhere(group: click.Group) -> None:
    """Give every command and group below ``group`` its own ``--config``, so
    ``mailgate tickets list --config x.toml`` works as ``mailgate --config x.toml …``."""
    for command in group.commands.values():
        if any(p.name == "config" for p in command.params):
            continue  # one command object under two names (`tickets show`, `ticket show`)
        command.params.append(
            click.Option(
                ["--config"],
                type=click.Path(dir_okay=False),
                expose_value=False,
                callback=_late_config,
                help=CONFIG_HELP,
            )
        )
        if isinstance(command, click.Group):
            accept_config_anywhere(command)


Row = TypeVar("Row", InboundMessage, OutboxMessage)


def pick(
    session: Session, model: type[Row], ids: tuple[int, ...], states: tuple[str, ...], doing: str
) -> list[Row]:
    """The rows ``ids`` of ``model``, every one in one of ``states``; otherwise nothing
    is done: one line names each unknown id and each row in another state, exit 1."""
    found = {r.id: r for r in session.scalars(select(model).where(model.id.in_(ids)))}
    what = "inbound message" if model is InboundMessage else "outgoing mail"
    problems = []
    for row_id in dict.fromkeys(ids):
        row = found.get(row_id)
        if row is None:
            problems.append(f"no {what} {row_id}")
        elif row.status not in states:
            problems.append(f"{what} {row_id} is {row.status}")
    if problems:
        fail(f"nothing {doing}: {'; '.join(problems)} (only {', '.join(states)} can be)")
    return [found[i] for i in dict.fromkeys(ids)]
