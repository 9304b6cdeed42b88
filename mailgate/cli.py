"""The ``mailgate`` command line: the daemon, ingest from a pipe or a batch, and the
operator's views of tickets (with their delivery events), the quarantine and the outbox.

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
from pathlib import Path
from typing import Any

import click
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mailgate.config import Settings, is_address, load
from mailgate.daemon import app, logs, wiring
from mailgate.daemon.runtime import Runtime
from mailgate.errors import ConfigError, PermanentError, TemporaryError
from mailgate.ingest import imap as imap_ingest
from mailgate.ingest.accept import Envelope, Incoming, accept, accept_many
from mailgate.parse import autoreply, parse
from mailgate.parse.message import ParsedMessage
from mailgate.pipeline import batches
from mailgate.replies import gates, notes, outbox
from mailgate.store import migrate
from mailgate.store.models import Account, Article, Event, InboundMessage, OutboxMessage, Ticket
from mailgate.tickets import correlate, operators, retention
from mailgate.verify import directory

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
        return wiring.build(self.settings)

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
        # SIGHUP re-reads the same file and environment the daemon started from.
        asyncio.run(app.serve(rt, reread=lambda: load(ctx.config_path)))
    finally:
        rt.close()


@main.command("check")
@pass_ctx
def check_cmd(ctx: Context) -> None:
    """Check config, database and schema, templates and the relay; exit 1 on a problem."""
    from mailgate.daemon.check import report, run_checks

    settings = ctx.settings  # a bad config exits 78 here, listing every problem
    click.echo(f"ok   config     {ctx.config_path or '(built-in defaults)'}")
    rt = wiring.build(settings)
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
        worker = batches.Worker(rt)
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
        parsed, None, own, frozenset(a.rpartition("@")[2] for a in own), raw=raw
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


def ticket_json(t: Ticket, account: str | None = None) -> dict[str, Any]:
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
        "authorization": t.authorization,
        "account": account,
        "priority_reason": t.priority_reason,
        "assignee": t.assignee,
        "first_response_due": _iso(t.first_response_due),
        "first_response_at": _iso(t.first_response_at),
        "escalated_at": _iso(t.escalated_at),
        "eta": _iso(t.eta_at),
        "eta_reason": t.eta_reason,
        "resolved_at": _iso(t.resolved_at),
        "closed_at": _iso(t.closed_at),
        "created_at": _iso(t.created_at),
        "updated_at": _iso(t.updated_at),
    }


@tickets.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=100, show_default=True)
@pass_ctx
def tickets_list(ctx: Context, as_json: bool, limit: int) -> None:
    with ctx.session() as (_, session):
        rows = session.execute(
            select(Ticket, Account.login)
            .outerjoin(Account, Ticket.account_id == Account.id)
            .order_by(Ticket.number.desc())
            .limit(limit)
        ).all()
        docs = [ticket_json(t, login) for t, login in rows]
    if as_json:
        click.echo(json.dumps(docs, ensure_ascii=False, indent=2))
        return
    for d in docs:
        click.echo(
            f"#{d['number']:<6} {d['status']:<8} {d['queue']:<10} {d['priority']:<7} "
            f"{d['requester']:<30} {d['subject'][:60]}"
        )
    click.echo(f"({len(docs)} shown)")


def ticket_doc(session: Session, number: int) -> dict[str, Any] | None:
    """Ticket NUMBER with its articles, participants and events (what `ticket show`
    prints; bench/lookup.py times it), or None when there is no such ticket."""
    t = session.scalar(select(Ticket).where(Ticket.number == number))
    if t is None:
        return None
    login = session.scalar(select(Account.login).where(Account.id == t.account_id))
    doc = ticket_json(t, login)
    linked = session.get(Ticket, t.linked_ticket_id) if t.linked_ticket_id else None
    doc["linked_ticket"] = linked.number if linked else None
    doc["participants"] = correlate.participants(session, t.id)
    doc["articles"] = [article_json(a) for a in t.articles]
    events = session.scalars(select(Event).where(Event.ticket_id == t.id).order_by(Event.id))
    doc["events"] = [event_json(e) for e in events]
    return doc


@main.group("ticket")
def ticket_group() -> None:
    """One ticket."""


@ticket_group.command("show")
@click.argument("number", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def ticket_show(ctx: Context, number: int, as_json: bool) -> None:
    with ctx.session() as (_, session):
        doc = ticket_doc(session, number)
    if doc is None:
        click.echo(f"no ticket {number}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    click.echo(f"#{doc['number']} {doc['subject']}")
    click.echo(f"  {doc['status']} · {doc['queue']} · {doc['priority']} · {doc['requester']}")
    click.echo(f"  authorization: {doc['authorization']} · account: {doc['account'] or '-'}")
    for a in doc["articles"]:
        flag = " (internal)" if a["internal"] else ""
        auth = f" auth={a['auth']['result']}" if a["auth"] else ""
        click.echo(f"\n--- {a['direction']} {a['author']} {a['created_at']}{flag}{auth}")
        click.echo(a["text"])
    if doc["events"]:
        click.echo("\nevents:")
    for e in doc["events"]:
        click.echo(f"  {e['created_at']} {e['kind']:<13} {e['reason']:<20} {e['detail']}")


def event_json(e: Event) -> dict[str, Any]:
    return {
        "kind": e.kind,
        "reason": e.reason,
        "address": e.address,
        "detail": e.detail,
        "outbox_id": e.outbox_id,
        "inbound_id": e.inbound_id,
        "created_at": _iso(e.created_at),
    }


def article_json(a: Article) -> dict[str, Any]:
    return {
        "direction": a.direction,
        "author": a.author,
        "subject": a.subject,
        "text": a.text,
        "internal": a.internal,
        "auth": a.auth,
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


@main.group()
def accounts() -> None:
    """The account directory: who may make official requests for which account."""


def _address_role(value: str) -> tuple[str, str]:
    address, _, role = value.rpartition(":")
    return (address, role) if address else (value, "technical")


@accounts.command("add")
@click.argument("login")
@click.option("--admin", required=True, help="The account's administrative address.")
@click.option(
    "--address", "addresses", multiple=True, help="EMAIL:ROLE (admin, technical, billing, abuse)."
)
@click.option("--domain", "domains", multiple=True)
@click.option("--contract", "contracts", multiple=True)
@click.option("--order", "orders", multiple=True)
@click.option("--ip", "ips", multiple=True)
@click.option("--service", "services", multiple=True)
@click.option("--lang", "language", default=None, help="en, pl, sk, cs or ru.")
@click.option("--name", default="", help="Display name of the customer.")
@pass_ctx
def accounts_add(
    ctx: Context,
    login: str,
    admin: str,
    addresses: tuple[str, ...],
    domains: tuple[str, ...],
    contracts: tuple[str, ...],
    orders: tuple[str, ...],
    ips: tuple[str, ...],
    services: tuple[str, ...],
    language: str | None,
    name: str,
) -> None:
    """Add an account (or add addresses and identifiers to an existing one)."""
    spec = directory.AccountSpec(
        login=login,
        admin=admin,
        name=name,
        language=language,
        addresses=tuple(_address_role(a) for a in addresses),
        identifiers=tuple(
            (kind, value)
            for kind, values in (
                ("domain", domains),
                ("contract", contracts),
                ("order", orders),
                ("ip", ips),
                ("service", services),
            )
            for value in values
        ),
    )
    _store_accounts(ctx, [spec])


@accounts.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@pass_ctx
def accounts_import(ctx: Context, file: str) -> None:
    """Import accounts from CSV (a header row) or JSON (a list of objects).

    Fields: login, admin, name, lang, addresses ("a@x:billing b@y:technical"),
    domains, contracts, orders, ips, services (lists, or space/comma-separated).
    """
    try:
        specs = directory.read_specs(Path(file))
    except ValueError as exc:
        click.echo(f"mailgate: {exc}", err=True)
        sys.exit(EX_DATAERR)
    _store_accounts(ctx, specs)


def _store_accounts(ctx: Context, specs: list[directory.AccountSpec]) -> None:
    problems = [f"{s.login or '?'}: {p}" for s in specs for p in s.problems()]
    if problems:
        click.echo("mailgate: nothing stored:\n  - " + "\n  - ".join(problems), err=True)
        sys.exit(EX_DATAERR)
    with ctx.session(write=True) as (rt, session):
        for spec in specs:
            directory.upsert(session, spec, rt.clock())
    click.echo(f"{len(specs)} account(s) stored")


def account_json(a: Account) -> dict[str, Any]:
    return {
        "login": a.login,
        "name": a.name,
        "language": a.language,
        "addresses": [{"address": x.address, "role": x.role} for x in a.addresses],
        "identifiers": [{"kind": i.kind, "value": i.value} for i in a.identifiers],
    }


@accounts.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def accounts_list(ctx: Context, as_json: bool) -> None:
    with ctx.session() as (_, session):
        docs = [account_json(a) for a in session.scalars(select(Account).order_by(Account.login))]
    if as_json:
        click.echo(json.dumps(docs, ensure_ascii=False, indent=2))
        return
    for d in docs:
        admins = ", ".join(x["address"] for x in d["addresses"] if x["role"] == "admin")
        click.echo(f"{d['login']:<20} {admins:<35} {len(d['identifiers'])} identifiers")
    click.echo(f"({len(docs)} accounts)")


@accounts.command("show")
@click.argument("login")
@pass_ctx
def accounts_show(ctx: Context, login: str) -> None:
    with ctx.session() as (_, session):
        account = session.scalar(select(Account).where(Account.login == login.lower()))
        if account is None:
            click.echo(f"no account {login}", err=True)
            sys.exit(1)
        click.echo(json.dumps(account_json(account), ensure_ascii=False, indent=2))


@main.group("operators")
def operators_group() -> None:
    """Operators who answer tickets from their mail client."""


@operators_group.command("add")
@click.argument("email")
@click.option("--name", default="", help="Shown to customers under the operator's replies.")
@click.option("--queue", "queues", multiple=True, required=True, help="A queue (repeatable).")
@pass_ctx
def operators_add(ctx: Context, email: str, name: str, queues: tuple[str, ...]) -> None:
    """Register an operator in one or more queues (or add queues to one)."""
    known = ctx.settings.queue_names
    listed = ", ".join(sorted(known))
    problems = [f"no queue {q!r} (queues: {listed})" for q in queues if q not in known]
    if not is_address(email):
        problems.append(f"{email!r} is not an e-mail address")
    if any(ch in name for ch in "\r\n"):
        problems.append("the name must not contain line breaks")
    if problems:
        click.echo("mailgate: nothing stored:\n  - " + "\n  - ".join(problems), err=True)
        sys.exit(EX_DATAERR)
    with ctx.session(write=True) as (rt, session):
        row = operators.add(session, email, name, queues, rt.clock())
        summary = f"{row.address} in {', '.join(row.queues)}"
    click.echo(f"operator {summary}")


@operators_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def operators_list(ctx: Context, as_json: bool) -> None:
    with ctx.session() as (_, session):
        docs = [
            {"address": o.address, "name": o.name, "queues": list(o.queues)}
            for o in operators.listing(session)
        ]
    if as_json:
        click.echo(json.dumps(docs, ensure_ascii=False, indent=2))
        return
    for d in docs:
        click.echo(f"{d['address']:<35} {d['name']:<25} {', '.join(d['queues'])}")
    click.echo(f"({len(docs)} operators)")


@main.group("outbox")
def outbox_group() -> None:
    """Outgoing mail: list it, send a held or failed mail again, or drop one."""


def outbox_json(m: OutboxMessage) -> dict[str, Any]:
    return {
        "id": m.id,
        "kind": m.kind,
        "automatic": m.automatic,
        "ticket_id": m.ticket_id,
        "recipient": m.recipient,
        "mail_from": m.mail_from,
        "message_id": m.message_id,
        "status": m.status,
        "reason": m.reason,
        "attempts": m.attempts,
        "next_attempt_at": _iso(m.next_attempt_at),
        "last_error": m.last_error,
        "created_at": _iso(m.created_at),
        "sent_at": _iso(m.sent_at),
        "delivery_status": m.delivery_status,
        "delivery_action": m.delivery_action,
        "delivery_detail": m.delivery_detail,
    }


@outbox_group.command("list")
@click.option("--status", "statuses", multiple=True, help="Only rows with this status.")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def outbox_list(ctx: Context, statuses: tuple[str, ...], limit: int, as_json: bool) -> None:
    with ctx.session() as (rt, session):
        query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
        if statuses:
            query = query.where(OutboxMessage.status.in_(statuses))
        docs = [outbox_json(m) for m in session.scalars(query)]
        breaker = gates.breaker_open_since(session, rt.settings.limits, rt.clock())
    if as_json:
        click.echo(json.dumps(docs, ensure_ascii=False, indent=2))
        return
    if breaker is not None:
        click.echo(f"circuit breaker OPEN since {breaker.isoformat()}: automatic mail held")
    for d in docs:
        why = d["reason"] or d["delivery_status"] or ""
        click.echo(
            f"{d['id']:<8} {d['status']:<10} {d['kind']:<14} {d['recipient']:<32} "
            f"{d['attempts']:>3} {why}"
        )
    click.echo(f"({len(docs)} shown)")


@outbox_group.command("retry")
@click.argument("outbox_ids", type=int, nargs=-1, required=True)
@pass_ctx
def outbox_retry(ctx: Context, outbox_ids: tuple[int, ...]) -> None:
    """Send failed, suppressed or bounced mail again now, past the automatic-mail gates."""
    with ctx.session(write=True) as (rt, session):
        rows = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.id.in_(outbox_ids),
                OutboxMessage.status.in_(("failed", "suppressed", "bounced", "pending")),
            )
        ).all()
        now = rt.clock()
        for m in rows:
            # An operator's decision: the limits that held it back no longer apply.
            m.status, m.reason, m.released = "pending", None, True
            m.attempts, m.next_attempt_at, m.created_at = 0, now, now
    click.echo(f"{len(rows)} outgoing mail(s) queued again")


@outbox_group.command("drop")
@click.argument("outbox_ids", type=int, nargs=-1, required=True)
@pass_ctx
def outbox_drop(ctx: Context, outbox_ids: tuple[int, ...]) -> None:
    """Never send these (pending or held) mails; the rows stay, marked dropped."""
    with ctx.session(write=True) as (rt, session):
        rows = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.id.in_(outbox_ids),
                OutboxMessage.status.in_(("pending", "failed", "suppressed")),
            )
        ).all()
        now = rt.clock()
        for m in rows:
            m.status, m.reason = "dropped", "dropped-by-operator"
            notes.event(
                session,
                now,
                "dropped",
                "dropped-by-operator",
                ticket_id=m.ticket_id,
                outbox_id=m.id,
                address=m.recipient,
                detail=f"{m.kind} to {m.recipient} dropped from the outbox by an operator",
            )
    click.echo(f"{len(rows)} outgoing mail(s) dropped")


@main.command("export")
@click.argument("number", type=int)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="mbox file to write.")
@pass_ctx
def export_cmd(ctx: Context, number: int, output: str | None) -> None:
    """Write ticket NUMBER's messages (as received and as sent) into an mbox file."""
    rt = ctx.runtime()
    target = Path(output or f"ticket-{number}.mbox")
    try:
        count = retention.export(rt, number, target)
    except LookupError as exc:
        click.echo(f"mailgate: {exc}", err=True)
        sys.exit(1)
    finally:
        rt.close()
    click.echo(f"{count} message(s) of ticket {number} written to {target}")


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
