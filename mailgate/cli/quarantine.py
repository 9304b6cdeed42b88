"""``quarantine``: inbound messages set aside — by the policy (spam, floods, the admin's
rules), or because processing failed for good or too often.  List them (``--reason``
picks by the start of the reason), show one (``--raw`` for the stored bytes), replay
them into the processing queue after a fix, or release held mail as not spam."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from sqlalchemy import select

from mailgate.cli import text
from mailgate.cli.root import Context, iso, main, pass_ctx, pick
from mailgate.replies import notes
from mailgate.store.models import InboundMessage
from mailgate.tickets.quarantine import held, release


@main.group()
def quarantine() -> None:
    """Messages that could not be processed: list, inspect, replay."""


def inbound_json(m: InboundMessage) -> dict[str, Any]:
    return {
        "id": m.id,
        "received_at": iso(m.received_at),
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
        "scan": m.scan,
        "released_at": iso(m.released_at) if m.released_at else None,
        "purged_at": iso(m.purged_at) if m.purged_at else None,
    }


@quarantine.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of messages).")
@click.option("--reason", default="", help="Only reasons starting with this (spam, flood …).")
@pass_ctx
def quarantine_list(ctx: Context, as_json: bool, reason: str) -> None:
    """The quarantined messages, oldest first, with the reason each was set aside."""
    with ctx.session() as (_, session):
        rows = session.scalars(held(reason)).all()
        docs = [inbound_json(m) for m in rows]
    if as_json:
        click.echo(json.dumps(docs, ensure_ascii=False, indent=2))
        return
    for d in docs:
        click.echo(
            f"{d['id']:<8} {d['received_at']} {text.line(d['reason']):<22} "
            f"{text.line(d['mail_from'])}"
        )
    click.echo(f"({len(docs)} quarantined)")


@quarantine.command("show")
@click.argument("inbound_id", type=int)
@click.option("--raw", is_flag=True, help="Print the stored message bytes.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the message's record).")
@pass_ctx
def quarantine_show(ctx: Context, inbound_id: int, raw: bool, as_json: bool) -> None:
    """One stored inbound message: envelope, status, why it was quarantined."""
    with ctx.session() as (_, session):
        m = session.get(InboundMessage, inbound_id)
        if m is None:
            click.echo(f"no inbound message {inbound_id}", err=True)
            sys.exit(1)
        if raw:
            sys.stdout.buffer.write(m.raw)
            return
        doc = inbound_json(m)
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    for key, value in doc.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        click.echo(f"{key:12} {text.block(shown) if key == 'last_error' else text.line(shown)}")


@quarantine.command("replay")
@click.argument("inbound_ids", type=int, nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every quarantined message.")
@pass_ctx
def quarantine_replay(ctx: Context, inbound_ids: tuple[int, ...], replay_all: bool) -> None:
    """Put quarantined messages back in the processing queue (after a fix)."""
    if bool(inbound_ids) == replay_all:
        raise click.UsageError("give the ids of quarantined messages, or --all")
    with ctx.session(write=True) as (rt, session):
        if replay_all:
            query = select(InboundMessage).where(InboundMessage.status == "quarantined")
            rows = list(session.scalars(query))
        else:
            rows = pick(session, InboundMessage, inbound_ids, ("quarantined",), "replayed")
        now = rt.clock()
        for m in rows:
            m.status, m.attempts, m.next_attempt_at = "received", 0, now
            m.reason = None
        count = len(rows)
    click.echo(f"{count} message(s) queued for processing again")


@quarantine.command("drop")
@click.argument("inbound_ids", type=int, nargs=-1, required=True)
@pass_ctx
def quarantine_drop(ctx: Context, inbound_ids: tuple[int, ...]) -> None:
    """Give up on quarantined messages for good: never processed, never replayed.

    The rows stay, marked dropped (with the reason they were quarantined), until the
    retention period purges their bytes like any processed message's.
    """
    with ctx.session(write=True) as (rt, session):
        rows = pick(session, InboundMessage, inbound_ids, ("quarantined",), "dropped")
        now = rt.clock()
        for m in rows:
            m.status = "dropped"
            notes.event(
                session,
                now,
                "dropped",
                "dropped-by-operator",
                inbound_id=m.id,
                address=m.mail_from,
                detail=f"quarantined message ({m.reason}) dropped by an operator",
            )
    click.echo(f"{len(rows)} message(s) dropped")


@quarantine.command("release")
@click.argument("inbound_ids", type=int, nargs=-1, required=True)
@pass_ctx
def quarantine_release(ctx: Context, inbound_ids: tuple[int, ...]) -> None:
    """Process held messages as not spam: spam verdicts, the flood limit and quarantining
    rules no longer hold them; they become tickets (and get answers) like any other."""
    problems: list[str] = []
    with ctx.session(write=True) as (rt, session):
        now = rt.clock()
        released = 0
        for inbound_id in inbound_ids:
            _, problem = release(session, inbound_id, now)
            if problem:
                problems.append(f"{inbound_id}: {problem}")
            else:
                released += 1
    for problem in problems:
        click.echo(f"mailgate: {problem}", err=True)
    click.echo(f"{released} message(s) released for processing as not spam")
    if problems:
        sys.exit(1)
