"""The API's writes: open a request, answer it, note on it, change it; release a
message from the quarantine.

Each handler reads the body (413 over ``api.max_body``, 400 when not JSON, 422 listing
every bad field), then does the ticket work of ``tickets.panel`` in one transaction
guarded by the request's ``Idempotency-Key``, and wakes the outbox when mail was
queued.  The token's name is logged with what it did and recorded on what it made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.daemon.api import idempotency
from mailgate.daemon.api.fields import Field, Shape, parse_json
from mailgate.daemon.api.problems import Problem, invalid, not_found
from mailgate.daemon.api.reading import MAX_ID, number_of
from mailgate.daemon.api.state import state, token_name
from mailgate.store.models import Account, Ticket
from mailgate.tickets import commands, panel, quarantine
from mailgate.tickets.documents import ticket_json

log = logging.getLogger(__name__)

ADDRESS = 512
TEXT = 200_000

OPEN_BODY = Shape(
    (
        Field("account", "the account's login", required=True, max_length=128, min_length=1),
        Field("from", "one of the account's addresses", required=True, max_length=ADDRESS),
        Field("subject", "the subject", required=True, max_length=998, min_length=1),
        Field("body", "the request, plain text", required=True, max_length=TEXT, min_length=1),
        Field("queue", "the queue (default: that of the first helpdesk address)", max_length=64),
        Field("priority", "the priority (default: normal)", enum=commands.PRIORITIES),
    )
)
ANSWER_BODY = Shape(
    (
        Field("author", "a registered operator's address", required=True, max_length=ADDRESS),
        Field("body", "the text, plain", required=True, max_length=TEXT, min_length=1),
    )
)
CHANGE_BODY = Shape(
    (
        Field("status", "the new status", enum=commands.STATUSES),
        Field("priority", "the new priority", enum=commands.PRIORITIES),
        Field("queue", "the new queue", max_length=64),
        Field("assignee", "an operator's address or name", max_length=ADDRESS),
    )
)


async def read_body(request: web.Request, shape: Shape) -> tuple[dict[str, Any], bytes]:
    """The checked fields and the raw body; never more than ``api.max_body`` is read."""
    limit = state(request).max_body
    if request.content_length is not None and request.content_length > limit:
        raise Problem(413, f"the body is over {limit} bytes")
    raw = bytearray()
    while chunk := await request.content.read(65536):
        raw += chunk
        if len(raw) > limit:
            raise Problem(413, f"the body is over {limit} bytes")
    return shape.read(parse_json(bytes(raw))), bytes(raw)


Work = Callable[[Session], idempotency.Answer]


async def _write(request: web.Request, raw: bytes, work: Work) -> web.Response:
    api = state(request)
    token = token_name(request)
    key = idempotency.check_key(request.headers.get(idempotency.HEADER))
    print_ = idempotency.fingerprint(request.method, request.path, raw)
    try:
        (status, doc), fresh = await api.run(idempotency.once, api.rt, token, key, print_, work)
    except panel.Invalid as exc:
        raise invalid(exc.problems) from exc
    if fresh:
        api.on_change()
    log.info(
        "api: %s %s by token %s -> %s%s",
        request.method,
        request.path,
        token,
        status,
        "" if fresh else " (replayed)",
    )
    headers = {"Idempotent-Replayed": "true"} if not fresh else {}
    return web.json_response(doc, status=status, headers=headers)


def _ticket(session: Session, number: int) -> Ticket:
    ticket = session.scalar(select(Ticket).where(Ticket.number == number).with_for_update())
    if ticket is None:
        raise not_found(f"ticket {number}")
    return ticket


async def open_ticket(request: web.Request) -> web.Response:
    body, raw = await read_body(request, OPEN_BODY)
    rt, token = state(request).rt, token_name(request)

    def work(session: Session) -> idempotency.Answer:
        ticket = panel.open_request(
            session,
            rt,
            login=body["account"],
            sender=body["from"],
            subject=body["subject"],
            body=body["body"],
            queue=body.get("queue"),
            priority=body.get("priority"),
            token=token,
        )
        return 201, {"number": ticket.number}

    return await _write(request, raw, work)


async def reply(request: web.Request) -> web.Response:
    return await _answer(request, panel.reply)


async def note(request: web.Request) -> web.Response:
    return await _answer(request, panel.note)


async def _answer(request: web.Request, act: Any) -> web.Response:
    number = number_of(request)
    body, raw = await read_body(request, ANSWER_BODY)
    rt = state(request).rt

    def work(session: Session) -> idempotency.Answer:
        article = act(session, rt, _ticket(session, number), body["author"], body["body"])
        session.flush()
        return 201, {"id": article.id}

    return await _write(request, raw, work)


async def change(request: web.Request) -> web.Response:
    number = number_of(request)
    body, raw = await read_body(request, CHANGE_BODY)
    rt, token = state(request).rt, token_name(request)

    def work(session: Session) -> idempotency.Answer:
        ticket = _ticket(session, number)
        if body:
            panel.change(session, rt, ticket, body, token)
        login = session.scalar(select(Account.login).where(Account.id == ticket.account_id))
        return 200, ticket_json(ticket, login)

    return await _write(request, raw, work)


async def release(request: web.Request) -> web.Response:
    """Release a held message for processing as not spam, as ``quarantine release``."""
    ident = int(request.match_info["id"])
    if ident > MAX_ID:
        raise not_found(f"inbound message {ident}")
    rt = state(request).rt

    def work(session: Session) -> idempotency.Answer:
        found, problem = quarantine.release(session, ident, rt.clock())
        if found is None:
            raise not_found(f"inbound message {ident}")
        if problem:
            raise Problem(409, f"inbound message {ident}: {problem}")
        return 200, {"id": ident, "status": found.status}

    # No body: the fingerprint of a retry is its method and path.
    return await _write(request, b"", work)
