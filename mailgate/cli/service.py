"""Running mailgate: ``serve`` (the daemon), ``drain`` (process what is pending, then
exit), ``check`` (is this install ready?) and ``db upgrade`` (the schema)."""

from __future__ import annotations

import sys

import click

from mailgate.cli.root import EX_TEMPFAIL, Context, main, pass_ctx
from mailgate.daemon import boot
from mailgate.errors import TemporaryError
from mailgate.pipeline import batches
from mailgate.replies import outbox
from mailgate.store import migrate


@main.command()
@pass_ctx
def serve(ctx: Context) -> None:
    """Run the daemon: SMTP/LMTP listeners, worker, outbox, health endpoints."""
    # The same start as ``mailgate serve`` takes without click (``mailgate.__main__``):
    # listeners first, the rest behind them; SIGHUP re-reads the same file.
    sys.exit(boot.main(ctx.config_path))


@main.command("check")
@pass_ctx
def check_cmd(ctx: Context) -> None:
    """Check config, database and schema, templates and the relay; exit 1 on a problem."""
    from mailgate.daemon.check import report, run_checks

    _ = ctx.settings  # a bad config exits 78 here, listing every problem
    click.echo(f"ok   config     {ctx.config_path or '(built-in defaults)'}")
    rt = ctx.runtime(schema=False)  # the schema is one of the checks
    try:
        findings = run_checks(rt)
    finally:
        rt.close()
    for line in report(findings):
        click.echo(line)
    if not all(f.ok for f in findings):
        sys.exit(1)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Context) -> None:
    """Create or migrate the schema to the newest revision."""
    rt = ctx.runtime(schema=False)
    try:
        migrate.upgrade(rt.engine)
    finally:
        rt.close()
    click.echo("database is at the newest schema revision")


@main.command()
@click.option("--no-send", is_flag=True, help="Process only; leave the outbox alone.")
@pass_ctx
def drain(ctx: Context, no_send: bool) -> None:
    """Process everything pending (and send what is due), then exit."""
    rt = ctx.runtime()
    processed = sent = 0
    try:
        worker = batches.Worker(rt, ahead=True)
        while n := worker.run_pending(50):
            processed += n
        worker.close()
        if not no_send:
            while n := outbox.flush(rt, 100):
                sent += n
    except TemporaryError as exc:
        click.echo(f"mailgate: {exc}", err=True)
        sys.exit(EX_TEMPFAIL)
    finally:
        rt.close()
    click.echo(f"processed {processed} messages, attempted {sent} outgoing")
