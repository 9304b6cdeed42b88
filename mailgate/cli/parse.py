"""``mailgate parse FILE``: what mailgate sees in one message, without the database —
the parser's result and the classification (reply, auto-reply, bounce …) as text or
JSON.  For an admin asking "why was this mail treated so?"."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from mailgate.cli.root import EX_DATAERR, Context, main, pass_ctx
from mailgate.errors import PermanentError
from mailgate.parse import autoreply, parse
from mailgate.parse.message import ParsedMessage


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
