"""Tickets on the command line: ``tickets list``, ``tickets show NUMBER`` (also
``ticket show``: with its articles, attachments, participants and delivery events) and
``export NUMBER`` to an mbox file.

The ``*_json`` functions are the one shape of a ticket, an article and an event that
both the text and the ``--json`` views print.
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
from mailgate.cli.root import Context, iso, main, pass_ctx
from mailgate.store.models import Account, Article, Event, InboundMessage, Ticket
from mailgate.tickets import correlate, retention


@main.group()
def tickets() -> None:
    """Tickets: list them, show one."""


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
        "first_response_due": iso(t.first_response_due),
        "first_response_at": iso(t.first_response_at),
        "escalated_at": iso(t.escalated_at),
        "eta": iso(t.eta_at),
        "eta_reason": t.eta_reason,
        "resolved_at": iso(t.resolved_at),
        "closed_at": iso(t.closed_at),
        "created_at": iso(t.created_at),
        "updated_at": iso(t.updated_at),
    }


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
    # Why each message that reached the ticket was handled as it was — the admin's
    # [[rules]] that matched among them, as ``rule:<name>`` (by primary key, through the
    # articles: inbound_message.ticket_id has no index).
    inbound_ids = sorted({a.inbound_id for a in t.articles if a.inbound_id is not None})
    decided = session.execute(
        select(InboundMessage.id, InboundMessage.verdict, InboundMessage.rule_hits)
        .where(InboundMessage.id.in_(inbound_ids))
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


def event_json(e: Event) -> dict[str, Any]:
    return {
        "kind": e.kind,
        "reason": e.reason,
        "address": e.address,
        "detail": e.detail,
        "outbox_id": e.outbox_id,
        "inbound_id": e.inbound_id,
        "created_at": iso(e.created_at),
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
        "created_at": iso(a.created_at),
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
