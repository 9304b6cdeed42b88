"""The API's routes, as one table: what the router serves and what the OpenAPI document
describes are both made from it.

``build`` returns the aiohttp application mounted under ``/api/v1`` by
``daemon.webapp``; nothing else imports this package.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from mailgate.daemon.api import reading, writing
from mailgate.daemon.api.fields import Shape
from mailgate.daemon.api.problems import Handler, Tokens, middleware
from mailgate.daemon.api.state import STATE, ApiState
from mailgate.daemon.runtime import Runtime

PREFIX = "/api/v1"
OPENAPI = "/openapi.json"


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str  # under PREFIX, OpenAPI style: /tickets/{number}
    handler: Handler
    summary: str
    ok: int  # the success status
    result: str  # name of the success schema (see openapi.SCHEMAS)
    body: Shape | None = None
    query: Shape | None = None
    errors: tuple[int, ...] = ()  # besides 401 (every route but the document's own)


READ_ERRORS = (404,)
WRITE_ERRORS = (400, 404, 413, 422)

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/tickets",
        reading.list_tickets,
        "List tickets, newest first, a page at a time",
        200,
        "TicketPage",
        query=reading.LIST_QUERY,
        errors=(422,),
    ),
    Route(
        "POST",
        "/tickets",
        writing.open_ticket,
        "Open an authorized request for an account's address",
        201,
        "Created",
        body=writing.OPEN_BODY,
        errors=(400, 413, 422),
    ),
    Route(
        "GET",
        "/tickets/{number}",
        reading.show_ticket,
        "One ticket with its articles and events",
        200,
        "TicketDocument",
        errors=READ_ERRORS,
    ),
    Route(
        "PATCH",
        "/tickets/{number}",
        writing.change,
        "Change status, priority, queue or assignee, as the e-mail commands do",
        200,
        "Ticket",
        body=writing.CHANGE_BODY,
        errors=WRITE_ERRORS,
    ),
    Route(
        "POST",
        "/tickets/{number}/replies",
        writing.reply,
        "An operator's answer, mailed to the requester",
        201,
        "ArticleCreated",
        body=writing.ANSWER_BODY,
        errors=WRITE_ERRORS,
    ),
    Route(
        "POST",
        "/tickets/{number}/notes",
        writing.note,
        "An internal note, mailed to no customer",
        201,
        "ArticleCreated",
        body=writing.ANSWER_BODY,
        errors=WRITE_ERRORS,
    ),
    Route(
        "GET",
        "/tickets/{number}/attachments/{id}",
        reading.attachment,
        "An attachment's bytes, as a download",
        200,
        "Bytes",
        errors=(404, 410),
    ),
    Route(
        "GET",
        "/quarantine",
        reading.list_quarantine,
        "List the quarantined inbound messages, oldest first, a page at a time",
        200,
        "QuarantinePage",
        query=reading.QUARANTINE_QUERY,
        errors=(422,),
    ),
    Route(
        "POST",
        "/quarantine/{id}/release",
        writing.release,
        "Release a held message for processing as not spam",
        200,
        "Released",
        errors=(404, 409, 422),
    ),
)


def _router_path(path: str) -> str:
    """The aiohttp pattern: numeric path parameters match digits only."""
    return path.replace("{number}", r"{number:\d+}").replace("{id}", r"{id:\d+}")


def build(
    rt: Runtime,
    tokens: Tokens,
    on_change: Callable[[], None],
    document: Callable[[], dict[str, Any]],
) -> web.Application:
    """The API application; ``document`` makes the OpenAPI document (served as is)."""
    app = web.Application(middlewares=[middleware(tokens, frozenset({PREFIX + OPENAPI}))])
    app[STATE] = ApiState(rt, rt.settings.api.max_body, on_change)
    doc = document()

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(doc)

    app.router.add_get(OPENAPI, openapi, allow_head=False)
    for route in ROUTES:
        app.router.add_route(route.method, _router_path(route.path), route.handler)
    return app
