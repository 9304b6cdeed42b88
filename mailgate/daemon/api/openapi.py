"""The API's OpenAPI 3.1 document, made from the route table and the field shapes.

Paths, methods, parameters, request bodies and statuses come from ``routes.ROUTES``
and the ``fields.Shape``s the handlers check with, so the document says what the code
does; the response schemas below describe the documents of ``tickets.documents`` and
``api.reading``.  Schemathesis tests the running API against this document.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from mailgate.daemon.api.problems import PROBLEM_TYPE
from mailgate.daemon.api.routes import OPENAPI, PREFIX, ROUTES, Route

STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
OPT_STR = {"type": ["string", "null"]}
TIME = {"type": "string", "format": "date-time"}
OPT_TIME = {"type": ["string", "null"], "format": "date-time"}


def _object(props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": sorted(props)}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


TICKET = {
    "number": INT,
    "subject": STR,
    "status": {"type": "string", "enum": ["new", "open", "pending", "resolved", "closed"]},
    "queue": STR,
    "priority": STR,
    "requester": STR,
    "requester_name": STR,
    "language": STR,
    "helpdesk_address": STR,
    "authorization": STR,
    "account": OPT_STR,
    "priority_reason": OPT_STR,
    "assignee": OPT_STR,
    "first_response_due": OPT_TIME,
    "first_response_at": OPT_TIME,
    "escalated_at": OPT_TIME,
    "eta": OPT_TIME,
    "eta_reason": OPT_STR,
    "resolved_at": OPT_TIME,
    "closed_at": OPT_TIME,
    "created_at": TIME,
    "updated_at": TIME,
}
ATTACHMENT = {"id": INT, "filename": STR, "content_type": STR, "size": INT, "sha256": STR}
ARTICLE = {
    "id": INT,
    "direction": {"type": "string", "enum": ["in", "out"]},
    "author": STR,
    "subject": STR,
    "text": {**STR, "description": "what the author wrote, quotes removed"},
    "body_text": {**STR, "description": "the full plain text"},
    "internal": BOOL,
    "auth": {"type": ["object", "null"]},
    "message_id": OPT_STR,
    "created_at": TIME,
    "attachments": {"type": "array", "items": _ref("Attachment")},
}
EVENT = {
    "kind": STR,
    "reason": STR,
    "address": OPT_STR,
    "detail": STR,
    "outbox_id": {"type": ["integer", "null"]},
    "inbound_id": {"type": ["integer", "null"]},
    "created_at": TIME,
}

SCHEMAS: dict[str, Any] = {
    "Ticket": _object(TICKET),
    "Attachment": _object(ATTACHMENT),
    "Article": _object(ARTICLE),
    "Event": _object(EVENT),
    "TicketDocument": _object(
        {
            **TICKET,
            "linked_ticket": {"type": ["integer", "null"]},
            "participants": {
                "type": "array",
                "items": _object({"address": STR, "role": STR}),
            },
            "articles": {"type": "array", "items": _ref("Article")},
            "events": {"type": "array", "items": _ref("Event")},
        }
    ),
    "TicketPage": _object({"items": {"type": "array", "items": _ref("Ticket")}, "next": OPT_STR}),
    "HeldMessage": _object(
        {
            "id": INT,
            "received_at": TIME,
            "mail_from": OPT_STR,
            "rcpt_to": {"type": "array", "items": STR},
            "subject": {**STR, "description": "decoded from the stored message's headers"},
            "reason": OPT_STR,
            "attempts": INT,
        }
    ),
    "QuarantinePage": _object(
        {"items": {"type": "array", "items": _ref("HeldMessage")}, "next": OPT_STR}
    ),
    "Released": _object({"id": INT, "status": {"type": "string", "enum": ["received"]}}),
    "Created": _object({"number": INT}),
    "ArticleCreated": _object({"id": INT}),
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": STR,
            "title": STR,
            "status": INT,
            "detail": STR,
            "errors": {
                "type": "array",
                "items": _object({"field": STR, "message": STR}),
            },
        },
    },
}


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {
        PREFIX + OPENAPI: {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {"200": {"description": "OK", **_json({"type": "object"})}},
            }
        }
    }
    for route in ROUTES:
        paths.setdefault(PREFIX + route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mailgate panel API",
            "version": "1",
            "description": "Tickets for the hosting panel; see docs/api.md.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": _operation_id(route),
        "summary": route.summary,
        "responses": {str(route.ok): _success(route)},
    }
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
        for name in ("number", "id")
        if "{" + name + "}" in route.path
    ]
    if route.query is not None:
        params += route.query.parameters()
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {"required": True, **_json(route.body.schema())}
    if route.method == "POST":
        op["parameters"] = [*params, _IDEMPOTENCY]
    for status in (401, *route.errors):
        op["responses"][str(status)] = {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_TYPE: {"schema": _ref("Problem")}},
        }
    return op


_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "a retry with the same key gets the first answer, never a second change",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
}


def _operation_id(route: Route) -> str:
    words = [w.strip("{}") for w in route.path.split("/") if w]
    return route.method.lower() + "_" + "_".join(words)


def _success(route: Route) -> dict[str, Any]:
    if route.result == "Bytes":
        return {
            "description": "the bytes, as a download",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
    return {"description": HTTPStatus(route.ok).phrase, **_json(_ref(route.result))}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}
