"""The API's reads: the ticket list with filters and cursors, one ticket with its
conversation, an attachment's bytes, and the quarantine's held messages.

Reads run in a thread on their own session and never write.  An attachment is always
sent as a download (``Content-Disposition: attachment``, ``application/octet-stream``,
``nosniff``, a sandboxing CSP), so HTML a customer attached is never rendered by the
panel's origin.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import select

from mailgate.daemon.api.fields import Field, Shape
from mailgate.daemon.api.problems import Problem, not_found
from mailgate.daemon.api.state import ApiState, state
from mailgate.store.db import translate_db_errors
from mailgate.store.models import Account, Article, Attachment, Blob, InboundMessage, Ticket
from mailgate.store.states import TicketStatus
from mailgate.tickets import quarantine
from mailgate.tickets.documents import article_detail, iso, ticket_doc, ticket_json

MAX_ID = 2**63 - 1  # BigInteger: a larger number names nothing
PAGE = 50


def _after(cursor: str) -> tuple[int | None, str]:
    """The ticket number a cursor continues after."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not re.fullmatch(r"n[0-9]{1,19}", text):
        return None, "not a cursor this API gave out"
    return int(text[1:]), ""


def _paging(what: str) -> tuple[Field, Field]:
    """The query fields of cursor pagination, alike for every list."""
    return (
        Field("cursor", "the `next` of the previous page", max_length=64, convert=_after),
        Field("limit", f"{what} per page (default {PAGE})", integer=(1, 200)),
    )


LIST_QUERY = Shape(
    (
        Field("status", "only tickets in this status", enum=tuple(TicketStatus)),
        Field("queue", "only tickets of this queue", max_length=64),
        Field("account", "only tickets of this account (its login)", max_length=128),
        Field("requester", "only tickets of this requester address", max_length=512),
        Field("updated_since", "only tickets changed at or after", format="date-time"),
        *_paging("tickets"),
    )
)


async def _listing(
    request: web.Request, shape: Shape, page: Callable[[ApiState, dict[str, Any]], Any]
) -> web.Response:
    """A page of a list: the query string checked against ``shape``, then ``page``."""
    query = shape.read(dict(request.query), "query")
    api = state(request)
    return web.json_response(await api.run(page, api, query))


async def list_tickets(request: web.Request) -> web.Response:
    return await _listing(request, LIST_QUERY, _page)


def _page(api: ApiState, query: dict[str, Any]) -> dict[str, Any]:
    limit = query.get("limit", PAGE)
    stmt = (
        select(Ticket, Account.login)
        .outerjoin(Account, Ticket.account_id == Account.id)
        .order_by(Ticket.number.desc())
        .limit(limit + 1)
    )
    if "cursor" in query:
        stmt = stmt.where(Ticket.number < query["cursor"])
    if "status" in query:
        stmt = stmt.where(Ticket.status == query["status"])
    if "queue" in query:
        stmt = stmt.where(Ticket.queue == query["queue"])
    if "account" in query:
        stmt = stmt.where(Account.login == query["account"])
    if "requester" in query:
        stmt = stmt.where(Ticket.requester == query["requester"].lower())
    if "updated_since" in query:
        since: datetime = query["updated_since"]
        stmt = stmt.where(Ticket.updated_at >= since)
    with translate_db_errors(), api.rt.sessions() as session:
        rows = session.execute(stmt).all()
    items = [ticket_json(t, login) for t, login in rows[:limit]]
    more = len(rows) > limit
    return {"items": items, "next": _cursor(items[-1]["number"]) if more else None}


def _cursor(number: int) -> str:
    return base64.urlsafe_b64encode(f"n{number}".encode()).decode().rstrip("=")


QUARANTINE_QUERY = Shape(
    (
        Field("reason", "only reasons starting with this (spam, flood …)", max_length=64),
        *_paging("messages"),
    )
)


async def list_quarantine(request: web.Request) -> web.Response:
    return await _listing(request, QUARANTINE_QUERY, _held_page)


def _held_page(api: ApiState, query: dict[str, Any]) -> dict[str, Any]:
    """Held messages oldest first (as ``quarantine list``), a page after the cursor."""
    limit = query.get("limit", PAGE)
    stmt = quarantine.held(query.get("reason", "")).limit(limit + 1)
    if "cursor" in query:
        stmt = stmt.where(InboundMessage.id > query["cursor"])
    with translate_db_errors(), api.rt.sessions() as session:
        rows = session.scalars(stmt).all()
        items = [_held(m) for m in rows[:limit]]
    more = len(rows) > limit
    return {"items": items, "next": _cursor(items[-1]["id"]) if more else None}


def _held(m: InboundMessage) -> dict[str, Any]:
    return {
        "id": m.id,
        "received_at": iso(m.received_at),
        "mail_from": m.mail_from,
        "rcpt_to": list(m.rcpt_to),
        "subject": quarantine.subject(m.raw),
        "reason": m.reason,
        "attempts": m.attempts,
    }


def number_of(request: web.Request, name: str = "number") -> int:
    """A numeric path parameter (the route allows only digits); too large: 404."""
    value = int(request.match_info[name])
    if value > MAX_ID:
        raise not_found("ticket" if name == "number" else "attachment")
    return value


async def show_ticket(request: web.Request) -> web.Response:
    api = state(request)
    number = number_of(request)
    doc = await api.run(ticket_document, api, number)
    if doc is None:
        raise not_found(f"ticket {number}")
    return web.json_response(doc)


def ticket_document(api: ApiState, number: int) -> dict[str, Any] | None:
    with translate_db_errors(), api.rt.sessions() as session:
        return ticket_doc(session, number, article_detail)


async def attachment(request: web.Request) -> web.Response:
    api = state(request)
    number, ident = number_of(request), number_of(request, "id")
    found = await api.run(_attachment, api, number, ident)
    if found is None:
        raise not_found(f"attachment {ident} of ticket {number}")
    filename, data = found
    if data is None:
        raise Problem(410, "the attachment's bytes were removed by the retention policy")
    return web.Response(
        body=data,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": disposition(filename),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, no-store",
        },
    )


def _attachment(api: ApiState, number: int, ident: int) -> tuple[str, bytes | None] | None:
    with translate_db_errors(), api.rt.sessions() as session:
        row = session.execute(
            select(Attachment.filename, Blob.data, Blob.purged_at)
            .join(Article, Attachment.article_id == Article.id)
            .join(Ticket, Article.ticket_id == Ticket.id)
            .join(Blob, Attachment.sha256 == Blob.sha256)
            .where(Attachment.id == ident, Ticket.number == number)
        ).first()
    if row is None:
        return None
    filename, data, purged = row
    return filename, None if purged is not None else bytes(data)


def safe_name(filename: str) -> str:
    """The last path element of a sender's file name, without quotes or controls."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable() and c not in '";')
    return name.strip(". ")[:200] or "attachment"


def disposition(filename: str) -> str:
    """``attachment`` with an ASCII name and the exact one in RFC 8187 form."""
    name = safe_name(filename)
    plain = name.encode("ascii", "replace").decode().replace("?", "_")
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{urllib.parse.quote(name)}"
