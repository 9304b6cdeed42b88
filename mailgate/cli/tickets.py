"""Tickets on the command line: ``tickets list``, ``tickets show NUMBER`` (also
``ticket show``: with its articles, attachments, participants and delivery events) and
``export NUMBER`` to an mbox file.

The shape of a ticket, an article and an event that both the text and the ``--json``
views print is ``mailgate.tickets.documents``'s.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.cli import text
from mailgate.cli.root import Context, main, pass_ctx
from mailgate.store.models import Account, Article, InboundMessage, Ticket
from mailgate.tickets import documents, retention
from mailgate.tickets.documents import article_json, event_json, ticket_json

__all__ = ["article_json", "event_json", "ticket_doc", "ticket_json"]


@main.group()
def tickets() -> None:
    """Tickets: list them, show one."""


@tickets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of tickets).")
@click.option("--limit", default=100, show_default=True, help="Show at most this many.")
@pass_ctx
def tickets_list(ctx: Context, as_json: bool, limit: int) -> None:
    """The newest tickets first, with status, queue, priority and requester."""
    with ctx.session() as (_, session):
        rows = session.execute(
            select(Ticket, Account.login)
            .outerjoin(Account, Ticket.account_id == Account.id)
            .order_by(Ticket.number.desc())
            .limit(limit + 1)  # one more tells whether the list was cut
        ).all()
        docs = [ticket_json(t, login) for t, login in rows[:limit]]
    if as_json:
        click.echo(json.dumps(docs, ensure_ascii=False, indent=2))
        return
    for d in docs:
        click.echo(
            f"#{d['number']:<6} {d['status']:<8} {d['queue']:<10} {d['priority']:<7} "
            f"{text.line(d['requester']):<30} {text.line(d['subject'][:60])}"
        )
    if len(rows) > limit:
        click.echo(f"({len(docs)} shown, the newest; more exist: --limit N shows more)")
    else:
        click.echo(f"({len(docs)} shown)")


def ticket_doc(session: Session, number: int) -> dict[str, Any] | None:
    """Ticket NUMBER as ``tickets.documents.ticket_doc`` shows it, plus why each message
    that reached it was handled as it was — the verdict and rule hits, among them the
    admin's [[rules]] as ``rule:<name>`` (what `ticket show` prints; bench/lookup.py
    times it), or None when there is no such ticket."""
    doc = documents.ticket_doc(session, number)
    if doc is None:
        return None
    ticket_id = session.scalar(select(Ticket.id).where(Ticket.number == number))
    # By primary key, through the articles: inbound_message.ticket_id has no index.
    inbound_ids = session.scalars(
        select(Article.inbound_id).where(
            Article.ticket_id == ticket_id, Article.inbound_id.is_not(None)
        )
    ).all()
    decided = session.execute(
        select(InboundMessage.id, InboundMessage.verdict, InboundMessage.rule_hits)
        .where(InboundMessage.id.in_(sorted(set(inbound_ids))))
        .order_by(InboundMessage.id)
    )
    doc["rule_hits"] = [
        {"inbound_id": i, "verdict": verdict, "hits": list(hits or [])}
        for i, verdict, hits in decided
    ]
    return doc


@main.group("ticket")
def ticket_group() -> None:
    """One ticket."""


@ticket_group.command("show")
@click.argument("number", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the ticket and its parts).")
@pass_ctx
def ticket_show(ctx: Context, number: int, as_json: bool) -> None:
    """Ticket NUMBER: its articles with their attachments, then its delivery events."""
    with ctx.session() as (_, session):
        doc = ticket_doc(session, number)
    if doc is None:
        click.echo(f"no ticket {number}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    line = text.line
    click.echo(f"#{doc['number']} {line(doc['subject'])}")
    click.echo(f"  {doc['status']} · {doc['queue']} · {doc['priority']} · {line(doc['requester'])}")
    click.echo(f"  authorization: {doc['authorization']} · account: {doc['account'] or '-'}")
    for a in doc["articles"]:
        flag = " (internal)" if a["internal"] else ""
        auth = f" auth={line(a['auth']['result'])}" if a["auth"] else ""
        click.echo(f"\n--- {a['direction']} {line(a['author'])} {a['created_at']}{flag}{auth}")
        click.echo(text.block(a["text"]))
        for x in a["attachments"]:
            click.echo(
                f"  attachment: {line(x['filename']) or '(no name)'} "
                f"({line(x['content_type'])}, {x['size']} bytes)"
            )
    if doc["events"]:
        click.echo("\nevents:")
    for e in doc["events"]:
        click.echo(f"  {e['created_at']} {e['kind']:<13} {e['reason']:<20} {line(e['detail'])}")


# `tickets show N` reads like `tickets list`; `ticket show N` stays for scripts.
tickets.add_command(ticket_show, "show")


@main.command("export")
@click.argument("number", type=int)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="mbox file to write.")
@pass_ctx
def export_cmd(ctx: Context, number: int, output: str | None) -> None:
    """Write ticket NUMBER's messages (as stored and as sent) into an mbox file.

    Passwords found in received mail were removed from the stored copy; such a
    message carries an X-Mailgate-Redacted header in the export.
    """
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
