"""``mailgate parse FILE``: what mailgate sees in one message, without the database —
the parser's result and the classification (reply, auto-reply, bounce …) as text or
JSON.  For an admin asking "why was this mail treated so?"."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import click

from mailgate.cli import text
from mailgate.cli.root import EX_DATAERR, Context, fail, main, pass_ctx
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
        if raw and not looks_like_mail(raw):
            raise PermanentError("not-a-mail-message", "it does not start with header lines")
        parsed = parse(raw)
    except PermanentError as exc:
        if as_json:
            click.echo(json.dumps({"error": exc.reason, "detail": exc.detail}))
            sys.exit(EX_DATAERR)
        detail = f" ({exc.detail})" if exc.detail else ""
        fail(f"{file.name}: {exc.reason.replace('-', ' ')}{detail}", EX_DATAERR)
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
            click.echo(f"{key:11} {text.line(doc[key])}")
        click.echo()
        click.echo(text.block(doc["text"]))


# A header field's first line: a name of printable ASCII but the colon, then a colon.
_FIELD = re.compile(rb"[!-9;-~]+[ \t]*:")


def looks_like_mail(raw: bytes) -> bool:
    """Whether ``raw`` starts with a header field (after an mbox "From " line) — the
    parser takes anything as a body, so a picture or an archive is caught here."""
    lines = raw.split(b"\n", 2)
    first = lines[1] if lines[0].startswith(b"From ") and len(lines) > 1 else lines[0]
    return _FIELD.match(first) is not None


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
