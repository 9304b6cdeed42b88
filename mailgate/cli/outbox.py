"""``outbox``: outgoing mail as the operator sees it — list it (with the circuit
breaker's state), send a held or failed mail again past the automatic-mail gates, or
drop one for good (the row stays, marked dropped, with an event on its ticket)."""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy import select

from mailgate.cli import text
from mailgate.cli.root import Context, iso, main, pass_ctx, pick
from mailgate.replies import gates, notes
from mailgate.store.models import OutboxMessage

# What an operator may send again, and what she may drop (never what has gone out).
RETRYABLE = ("failed", "suppressed", "bounced", "pending")
DROPPABLE = ("pending", "failed", "suppressed")


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
        "next_attempt_at": iso(m.next_attempt_at),
        "last_error": m.last_error,
        "created_at": iso(m.created_at),
        "sent_at": iso(m.sent_at),
        "delivery_status": m.delivery_status,
        "delivery_action": m.delivery_action,
        "delivery_detail": m.delivery_detail,
    }


@outbox_group.command("list")
@click.option("--status", "statuses", multiple=True, help="Only rows with this status.")
@click.option("--limit", default=100, show_default=True, help="Show at most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of mails).")
@pass_ctx
def outbox_list(ctx: Context, statuses: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Outgoing mail, newest first, and whether the circuit breaker holds automatic mail."""
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
    if docs:
        click.echo(f"{'ID':<8} {'STATUS':<10} {'KIND':<14} {'RECIPIENT':<32} {'TRIES':>5} WHY")
    for d in docs:
        why = text.line(d["reason"] or d["delivery_status"] or "")
        click.echo(
            f"{d['id']:<8} {d['status']:<10} {d['kind']:<14} {text.line(d['recipient']):<32} "
            f"{d['attempts']:>5} {why}"
        )
    click.echo(f"({len(docs)} shown)")


@outbox_group.command("retry")
@click.argument("outbox_ids", type=int, nargs=-1, required=True)
@pass_ctx
def outbox_retry(ctx: Context, outbox_ids: tuple[int, ...]) -> None:
    """Send failed, suppressed or bounced mail again now, past the automatic-mail gates."""
    with ctx.session(write=True) as (rt, session):
        rows = pick(session, OutboxMessage, outbox_ids, RETRYABLE, "queued again")
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
        rows = pick(session, OutboxMessage, outbox_ids, DROPPABLE, "dropped")
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
