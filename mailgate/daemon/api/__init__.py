"""The JSON API for the hosting panel, under ``/api/v1`` on the daemon's HTTP listener.

An adapter like the mail listeners: it reads and writes tickets through ``tickets``,
``replies`` and ``store`` and holds no ticket rules of its own.  Only ``daemon.webapp``
mounts it.  ``problems`` is the door (tokens, RFC 9457 errors), ``fields`` what a request
may hold, ``reading`` and ``writing`` the handlers, ``idempotency`` the retry guard,
``routes`` the route table and ``openapi`` the document made from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp import web

from mailgate.config import parse_tokens
from mailgate.daemon.api import openapi, routes
from mailgate.daemon.api.problems import Tokens

__all__ = ["Tokens", "mount", "tokens_from"]
from mailgate.daemon.runtime import Runtime


def tokens_from(rt: Runtime, environ: Mapping[str, str]) -> Tokens:
    """The tokens named by ``api.tokens_env`` (validated with the config at start-up)."""
    name = rt.settings.api.tokens_env
    found, _ = parse_tokens(environ.get(name, "")) if name else ({}, [])
    return Tokens(found)


def mount(app: web.Application, rt: Runtime, tokens: Tokens, on_change: Callable[[], None]) -> None:
    """Serve the API under /api/v1."""
    app.add_subapp(routes.PREFIX, routes.build(rt, tokens, on_change, openapi.document))
