"""Mail in from the command line: ``ingest`` (an MTA's pipe, or a batch of old mail from
an mbox file or a Maildir) and ``imap poll-once``.

The work is in the ingest package (``ingest.pipe``, ``ingest.archive``,
``ingest.imap``); these commands read the options and print what happened.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import click
from sqlalchemy.orm import Session, sessionmaker

from mailgate.cli.root import EX_CONFIG, EX_NOINPUT, EX_TEMPFAIL, Context, fail, main, pass_ctx
from mailgate.config import Settings
from mailgate.ingest import archive, pipe
from mailgate.ingest import imap as imap_ingest
from mailgate.ingest.accept import Envelope
from mailgate.replies import verp


@main.command()
@click.option("--from", "mail_from", default=None, help="Envelope sender (pipe: ${sender}).")
@click.option("--to", "rcpt_to", multiple=True, help="Envelope recipient (repeatable).")
@click.option("--mbox", type=click.Path(exists=True, dir_okay=False), help="Import an mbox file.")
@click.option("--maildir", type=click.Path(exists=True, file_okay=False), help="Import a Maildir.")
@click.option(
    "--acknowledge/--no-acknowledge",
    default=None,
    help="Send acknowledgements (default: yes for the pipe, no for batch imports of old mail).",
)
@pass_ctx
def ingest(
    ctx: Context,
    mail_from: str | None,
    rcpt_to: tuple[str, ...],
    mbox: str | None,
    maildir: str | None,
    acknowledge: bool | None,
) -> None:
    """Store a message from standard input (an MTA pipe), or import a batch.

    The pipe needs --to, a helpdesk address (exit 64 without one, 67 for an address
    the SMTP listener would refuse too); nothing is stored then.
    """
    envelope = Envelope(mail_from=mail_from, rcpt_to=tuple(r.lower() for r in rcpt_to))
    settings = ctx.settings  # a bad config exits 78 here
    database = settings.database
    if maildir and not all((Path(maildir) / d).is_dir() for d in ("cur", "new", "tmp")):
        fail(f"{maildir}: not a Maildir (no cur/new/tmp)", EX_NOINPUT)

    def import_batch(sessions: sessionmaker[Session]) -> None:
        if mbox:
            done = archive.import_mbox(sessions, mbox, envelope, bool(acknowledge))
        else:
            assert maildir is not None
            done = archive.import_maildir(sessions, maildir, envelope, bool(acknowledge))
        click.echo(
            f"{done.stored} stored, {done.duplicates} already present ({done.found} in {done.path})"
        )

    if mbox or maildir:
        code = pipe.guarded(database, import_batch)
    else:
        known = recipient_test(settings)
        code = pipe.run(database, envelope, known, acknowledge=acknowledge is not False)
    if code != pipe.EX_OK:
        sys.exit(code)


def recipient_test(settings: Settings) -> Callable[[str], bool]:
    """The SMTP listener's RCPT test: a helpdesk address, or a VERP return path of ours
    whose tag verifies (bounces the MTA pipes to us)."""
    secret_env = settings.outbound.verp_secret_env
    key = os.environ[secret_env].encode() if secret_env in os.environ else None
    local = settings.outbound.verp_local_part

    def known(address: str) -> bool:
        if settings.queue_for(address) is not None:
            return True
        return verp.parse(address, local, key) is not None

    return known


@main.group()
def imap() -> None:
    """IMAP accounts ([[imap]] in the config)."""


@imap.command("poll-once")
@click.option("--account", "accounts", multiple=True, help="Only this account (repeatable).")
@pass_ctx
def imap_poll_once(ctx: Context, accounts: tuple[str, ...]) -> None:
    """Import what the configured folders hold now, then exit (run `drain` to process)."""
    settings = ctx.settings
    unknown = set(accounts) - {a.name for a in settings.imap}
    if not settings.imap or unknown:
        what = ", ".join(sorted(unknown)) if unknown else "none configured"
        click.echo(f"mailgate: no such [[imap]] account: {what}", err=True)
        sys.exit(EX_CONFIG)
    rt = ctx.runtime()
    try:
        results = imap_ingest.poll_once(rt, accounts)
    finally:
        rt.close()
    failed = False
    for r in results:
        s = r.stats
        line = (
            f"{s.account}/{s.folder}: {s.stored} stored, {s.duplicates} already present, "
            f"{s.skipped} skipped"
        )
        if r.busy:
            line = f"{s.account}/{s.folder}: another mailgate process is reading this folder"
        elif not r.completed:
            failed = True
            line += f"; incomplete: {s.last_error}"
        click.echo(line)
    if failed:
        sys.exit(EX_TEMPFAIL)
