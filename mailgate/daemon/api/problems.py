"""Errors as RFC 9457 problem documents, and the door of the API: its bearer tokens.

Every failure of an API request — no or a wrong token, an unknown ticket, malformed
JSON, invalid fields, an oversized body — leaves as ``application/problem+json`` with
the HTTP status, a title and, for 422, every field that was wrong.  Handlers raise
``Problem``; the middleware here turns it (and aiohttp's own HTTP errors, such as an
unknown path or method) into that document, and refuses a request without a valid
token before any handler runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from http import HTTPStatus
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"
# The name of the token that authenticated the request being handled (set by the
# middleware for the handler's task).
CALLER: ContextVar[str] = ContextVar("mailgate_api_caller")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Problem(Exception):
    """An error to answer with: its status, a detail and, for 422, the field errors."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: Iterable[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})


def invalid(errors: Iterable[tuple[str, str]]) -> Problem:
    return Problem(422, "the request has invalid or unknown fields", errors)


def not_found(what: str) -> Problem:
    return Problem(404, f"{what} not found")


def response(problem: Problem) -> web.Response:
    doc: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(problem.status).phrase,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.errors:
        doc["errors"] = [{"field": f, "message": m} for f, m in problem.errors]
    return web.Response(
        status=problem.status,
        body=json.dumps(doc, ensure_ascii=False).encode(),
        headers={"Content-Type": PROBLEM_TYPE, **problem.headers},
    )


class Tokens:
    """The API's bearer tokens (secret → name), compared in constant time."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        # Compared as digests: equal lengths, so the comparison's time says nothing
        # about how long a secret is or how much of it a guess got right.
        self._by_digest = [(_digest(secret), name) for secret, name in tokens.items()]

    def __bool__(self) -> bool:
        return bool(self._by_digest)

    def name_of(self, header: str | None) -> str | None:
        """The token's name for an ``Authorization`` header value, or None."""
        scheme, _, secret = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return None
        offered = _digest(secret.strip())
        found = None
        for digest, name in self._by_digest:  # no early exit: every token is compared
            if hmac.compare_digest(digest, offered):
                found = name
        return found


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def middleware(tokens: Tokens, public: frozenset[str]) -> Any:
    """Authenticate every request but those to ``public`` paths; answer problems."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.path not in public:
                name = tokens.name_of(request.headers.get("Authorization"))
                if name is None:
                    raise Problem(
                        401,
                        "a valid API token is needed (Authorization: Bearer <token>)",
                        headers={"WWW-Authenticate": 'Bearer realm="mailgate"'},
                    )
                CALLER.set(name)
            return await handler(request)
        except Problem as problem:
            return response(problem)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return response(Problem(exc.status, exc.reason, headers=_kept(exc.headers)))

    return guard


def _kept(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of an aiohttp error worth keeping (Allow on a 405)."""
    return {k: v for k, v in headers.items() if k.lower() == "allow"}
