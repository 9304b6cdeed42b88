"""The ``mailgate`` command line: the daemon, ingest from a pipe or a batch, and the
operator's views of tickets and the quarantine.

Exit codes follow sysexits(3) where an MTA reads them: 0 stored, 75 (EX_TEMPFAIL) try
again later, 65 (EX_DATAERR) the input itself is unusable, 78 (EX_CONFIG) bad config.
"""

from __future__ import annotations

import asyncio
import json
import mailbox
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from itertools import islice
from typing import Any

import click
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mailgate import app, autoreply, logs, pipeline
from mailgate.config import Settings, load
from mailgate.errors import ConfigError, PermanentError, TemporaryError
from mailgate.ingest import imap as imap_ingest
from mailgate.ingest.accept import Envelope, Incoming, accept, accept_many
from mailgate.message import ParsedMessage
from mailgate.parse import parse
from mailgate.replies import outbox
from mailgate.runtime import Runtime
from mailgate.store import migrate
from mailgate.store.models import Article, InboundMessage, Ticket

EX_DATAERR = 65
EX_TEMPFAIL = 75
EX_CONFIG = 78
BATCH_SIZE = 200


class Context:
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


@main.command()
@pass_ctx
def serve(ctx: Context) -> None:
    """Run the daemon: SMTP/LMTP listeners, worker, outbox, health endpoints."""
    rt = ctx.runtime()
    _require_schema(rt)
    try:
        asyncio.run(app.serve(rt))
    finally:
        rt.close()


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Context) -> None:
    """Create or migrate the schema to the newest revision."""
    rt = ctx.runtime()
    try:
        migrate.upgrade(rt.engine)
    finally:
        rt.close()
    click.echo("database is at the newest schema revision")


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
    """Store a message from standard input (an MTA pipe), or import a batch."""
    envelope = Envelope(mail_from=mail_from, rcpt_to=tuple(r.lower() for r in rcpt_to))
    try:
        rt = ctx.runtime()
    except SQLAlchemyError as exc:
        click.echo(f"mailgate: database unavailable: {exc}", err=True)
        sys.exit(EX_TEMPFAIL)
    try:
        if mbox or maildir:
            _ingest_batch(rt, mbox, maildir, envelope, bool(acknowledge))
            return
        raw = sys.stdin.buffer.read()
        result = accept(rt.sessions, raw, envelope, "pipe", acknowledge=acknowledge is not False)
        click.echo(f"stored as inbound message {result.inbound_id}", err=True)
    except PermanentError as exc:
        click.echo(f"mailgate: refused: {exc}", err=True)
        sys.exit(EX_DATAERR)
    except TemporaryError as exc:
        click.echo(f"mailgate: temporary failure, try again later: {exc}", err=True)
        sys.exit(EX_TEMPFAIL)
    except Exception as exc:  # noqa: BLE001 -- an MTA must retry, not bounce, on our bugs
        click.echo(f"mailgate: unexpected failure, try again later: {exc!r}", err=True)
        sys.exit(EX_TEMPFAIL)
    finally:
        rt.close()


def _ingest_batch(
    rt: Runtime, mbox: str | None, maildir: str | None, envelope: Envelope, acknowledge: bool
) -> None:
    from tqdm import tqdm

    box: mailbox.Mailbox[Any]
    if mbox:
        path, source = os.path.abspath(mbox), "mbox"
        box = mailbox.mbox(path, create=False)
    else:
        assert maildir is not None
        path, source = os.path.abspath(maildir), "maildir"
        box = mailbox.Maildir(path, factory=None, create=False)
    keys = list(box.keys())
    stored = duplicates = 0

    def items() -> Iterator[Incoming]:
        for key in keys:
            raw = box.get_bytes(key)
            yield Incoming(raw, envelope, source, f"{source}:{path}:{key}", acknowledge)

    try:
        with tqdm(total=len(keys), unit="msg", disable=None, desc="importing") as bar:
            it = items()
            while chunk := list(islice(it, BATCH_SIZE)):
                results = accept_many(rt.sessions, chunk)
                duplicates += sum(r.duplicate for r in results)
                stored += sum(not r.duplicate for r in results)
                bar.update(len(chunk))
    finally:
        box.close()
    click.echo(f"{stored} stored, {duplicates} already present ({len(keys)} in {path})")


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
        _require_schema(rt)
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


@main.command()
@click.option("--no-send", is_flag=True, help="Process only; leave the outbox alone.")
@pass_ctx
def drain(ctx: Context, no_send: bool) -> None:
    """Process everything pending (and send what is due), then exit."""
    rt = ctx.runtime()
    processed = sent = 0
    try:
        _require_schema(rt)
        worker = pipeline.Worker(rt)
        while n := worker.run_pending(50):
            processed += n
        if not no_send:
            while n := outbox.flush(rt, 100):
                sent += n
    except TemporaryError as exc:
        click.echo(f"mailgate: {exc}", err=True)
        sys.exit(EX_TEMPFAIL)
    finally:
        rt.close()
    click.echo(f"processed {processed} messages, attempted {sent} outgoing")


@main.command("parse")
@click.argument("file", type=click.File("rb"))
@click.option("--json", "as_json", is_flag=True, help="Print the parse result as JSON.")
@pass_ctx
def parse_cmd(ctx: Context, file: Any, as_json: bool) -> None:
    """Parse one message file and print what mailgate sees, without touching the DB."""
    raw = file.read()
    settings = ctx.settings
    try:
        parsed = parse(raw)
    except PermanentError as exc:
        click.echo(json.dumps({"error": exc.reason, "detail": exc.detail}))
        sys.exit(EX_DATAERR)
    own = frozenset(a.lower() for a in settings.helpdesk.queues)
    classification = autoreply.classify(
        parsed, None, own, frozenset(a.rpartition("@")[2] for a in own)
    )
    doc = parsed_json(parsed)
    doc["kind"] = classification.kind
    doc["kind_reasons"] = list(classification.reasons)
    b = classification.bounce
    doc["bounce"] = (
        {"recipients": list(b.recipients), "status": b.status, "action": b.action} if b else None
    )
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        for key in ("message_id", "from", "subject", "date", "kind", "language"):
            click.echo(f"{key:11} {doc[key]}")
        click.echo()
        click.echo(doc["text"])


def parsed_json(p: ParsedMessage) -> dict[str, Any]:
    def addr(a: Any) -> dict[str, str] | None:
        return {"name": a.name, "address": a.address} if a else None

    return {
        "message_id": p.message_id,
        "from": addr(p.from_),
        "reply_to": [addr(a) for a in p.reply_to],
        "to": [addr(a) for a in p.to],
        "cc": [addr(a) for a in p.cc],
        "subject": p.subject,
        "date": p.date.isoformat() if p.date else None,
        "in_reply_to": list(p.in_reply_to),
        "references": list(p.references),
        "text": p.text,
        "body_text": p.body_text,
        "html": p.html,
        "attachments": [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "sha256": a.sha256,
            }
            for a in p.attachments
        ],
        "language": p.language,
        "defects": list(p.defects),
    }


@main.group()
def tickets() -> None:
    """List tickets."""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def ticket_json(t: Ticket) -> dict[str, Any]:
    return {
        "number": t.number,
        "subject": t.subject,
        "status": t.status,
        "queue": t.queue,
        "priority": t.priority,
        "requester": t.requester,
        "requester_name": t.requester_name,
        "language": t.language,
        "helpdesk_address": t.helpdesk_address,
        "created_at": _iso(t.created_at),
        "updated_at": _iso(t.updated_at),
    }


@tickets.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=100, show_default=True)
@pass_ctx
def tickets_list(ctx: Context, as_json: bool, limit: int) -> None:
    with ctx.session() as (_, session):
        rows = session.scalars(select(Ticket).order_by(Ticket.number.desc()).limit(limit)).all()
        docs = [ticket_json(t) for t in rows]
    if as_json:
        click.echo(json.dumps(docs, ensure_ascii=False, indent=2))
        return
    for d in docs:
        click.echo(
            f"#{d['number']:<6} {d['status']:<8} {d['queue']:<10} {d['priority']:<7} "
            f"{d['requester']:<30} {d['subject'][:60]}"
        )
    click.echo(f"({len(docs)} shown)")


@main.group("ticket")
def ticket_group() -> None:
    """One ticket."""


@ticket_group.command("show")
@click.argument("number", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def ticket_show(ctx: Context, number: int, as_json: bool) -> None:
    with ctx.session() as (_, session):
        t = session.scalar(select(Ticket).where(Ticket.number == number))
        if t is None:
            click.echo(f"no ticket {number}", err=True)
            sys.exit(1)
        doc = ticket_json(t)
        doc["articles"] = [article_json(a) for a in t.articles]
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    click.echo(f"#{doc['number']} {doc['subject']}")
    click.echo(f"  {doc['status']} · {doc['queue']} · {doc['priority']} · {doc['requester']}")
    for a in doc["articles"]:
        flag = " (internal)" if a["internal"] else ""
        click.echo(f"\n--- {a['direction']} {a['author']} {a['created_at']}{flag}")
        click.echo(a["text"])


def article_json(a: Article) -> dict[str, Any]:
    return {
        "direction": a.direction,
        "author": a.author,
        "subject": a.subject,
        "text": a.text,
        "internal": a.internal,
        "message_id": a.message_id,
        "created_at": _iso(a.created_at),
        "attachments": [
            {
                "filename": x.filename,
                "content_type": x.content_type,
                "size": x.size,
                "sha256": x.sha256,
            }
            for x in a.attachments
        ],
    }


@main.group()
def quarantine() -> None:
    """Messages that could not be processed: list, inspect, replay."""


def inbound_json(m: InboundMessage) -> dict[str, Any]:
    return {
        "id": m.id,
        "received_at": _iso(m.received_at),
        "source": m.source,
        "mail_from": m.mail_from,
        "rcpt_to": m.rcpt_to,
        "message_id": m.message_id,
        "size": m.size,
        "status": m.status,
        "reason": m.reason,
        "attempts": m.attempts,
        "last_error": m.last_error,
        "rule_hits": m.rule_hits,
    }


@quarantine.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def quarantine_list(ctx: Context, as_json: bool) -> None:
    with ctx.session() as (_, session):
        rows = session.scalars(
            select(InboundMessage)
            .where(InboundMessage.status == "quarantined")
            .order_by(InboundMessage.id)
        ).all()
        docs = [inbound_json(m) for m in rows]
    if as_json:
        click.echo(json.dumps(docs, ensure_ascii=False, indent=2))
        return
    for d in docs:
        click.echo(f"{d['id']:<8} {d['received_at']} {d['reason']:<22} {d['mail_from']}")
    click.echo(f"({len(docs)} quarantined)")


@quarantine.command("show")
@click.argument("inbound_id", type=int)
@click.option("--raw", is_flag=True, help="Print the stored message bytes.")
@pass_ctx
def quarantine_show(ctx: Context, inbound_id: int, raw: bool) -> None:
    with ctx.session() as (_, session):
        m = session.get(InboundMessage, inbound_id)
        if m is None:
            click.echo(f"no inbound message {inbound_id}", err=True)
            sys.exit(1)
        if raw:
            sys.stdout.buffer.write(m.raw)
            return
        click.echo(json.dumps(inbound_json(m), ensure_ascii=False, indent=2))


@quarantine.command("replay")
@click.argument("inbound_ids", type=int, nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every quarantined message.")
@pass_ctx
def quarantine_replay(ctx: Context, inbound_ids: tuple[int, ...], replay_all: bool) -> None:
    """Put quarantined messages back in the processing queue (after a fix)."""
    with ctx.session(write=True) as (rt, session):
        query = select(InboundMessage).where(InboundMessage.status == "quarantined")
        if not replay_all:
            query = query.where(InboundMessage.id.in_(inbound_ids))
        rows = session.scalars(query).all()
        now = rt.clock()
        for m in rows:
            m.status, m.attempts, m.next_attempt_at = "received", 0, now
            m.reason = None
        count = len(rows)
    click.echo(f"{count} message(s) queued for processing again")


def _require_schema(rt: Runtime) -> None:
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


if __name__ == "__main__":  # pragma: no cover
    main()
