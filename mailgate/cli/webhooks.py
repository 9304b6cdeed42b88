"""``webhooks``: the events told (or still to be told) to webhook URLs — list them with
their attempts and last error, and send given-up ones again."""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy import select

from mailgate.cli import text
from mailgate.cli.root import Context, iso, main, pass_ctx
from mailgate.store.models import WebhookEvent


@main.group("webhooks")
def webhooks_group() -> None:
    """Webhook events: list them, send given-up ones again."""


def event_json(e: WebhookEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "event_id": e.event_id,
        "type": e.type,
        "url": e.url,
        "ticket": (e.payload.get("ticket") or {}).get("number"),
        "status": e.status,
        "attempts": e.attempts,
        "next_attempt_at": iso(e.next_attempt_at),
        "last_error": e.last_error,
        "created_at": iso(e.created_at),
        "sent_at": iso(e.sent_at),
    }


@webhooks_group.command("list")
@click.option("--status", "statuses", multiple=True, help="pending, sent or failed.")
@click.option("--limit", default=100, show_default=True, help="Show at most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of events).")
@pass_ctx
def webhooks_list(ctx: Context, statuses: tuple[str, ...], limit: int, as_json: bool) -> None:
    """The newest webhook events first: status, type, ticket, attempts, URL, last error."""
    with ctx.session() as (_, session):
        query = select(WebhookEvent).order_by(WebhookEvent.id.desc()).limit(limit)
        if statuses:
            query = query.where(WebhookEvent.status.in_(statuses))
        docs = [event_json(e) for e in session.scalars(query)]
    if as_json:
        click.echo(json.dumps(docs, ensure_ascii=False, indent=2))
        return
    for d in docs:
        ticket = f"#{d['ticket']}" if d["ticket"] else "-"
        click.echo(
            f"{d['id']:<8} {d['status']:<8} {d['type']:<20} {ticket:<8} {d['attempts']:>3} "
            f"{d['url']} {text.line(d['last_error'] or '')}".rstrip()
        )
    click.echo(f"({len(docs)} shown)")


@webhooks_group.command("resend")
@click.argument("ids", type=int, nargs=-1, required=True)
@pass_ctx
def webhooks_resend(ctx: Context, ids: tuple[int, ...]) -> None:
    """Send these events again now (given up or sent ones; same event id)."""
    with ctx.session(write=True) as (rt, session):
        rows = session.scalars(select(WebhookEvent).where(WebhookEvent.id.in_(ids))).all()
        now = rt.clock()
        for e in rows:
            # A fresh lifetime from now; the receiver still de-duplicates by event id.
            e.status, e.attempts, e.next_attempt_at, e.created_at = "pending", 0, now, now
    click.echo(f"{len(rows)} webhook event(s) queued again")
