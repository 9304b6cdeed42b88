"""The OpenAPI document matches the code: every route served is documented with its
methods and statuses, and nothing documented is missing from the router."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from mailgate.daemon.api import openapi
from mailgate.daemon.api.problems import Tokens
from mailgate.daemon.runtime import Runtime
from mailgate.daemon.webapp import make_app
from tests.api.client import SECRET, running_api


def served(app: web.Application) -> set[tuple[str, str]]:
    """(METHOD, path template) of every route under /api/, read from aiohttp's router."""
    found: set[tuple[str, str]] = set()
    for resource in app.router.resources():
        if not isinstance(resource, web.PrefixedSubAppResource):
            continue
        for sub in resource._app.router.resources():
            path = sub.canonical  # already carries the prefix
            found |= {(route.method, path) for route in sub}
    return found


def test_every_route_is_documented_and_every_documented_route_served(rt: Runtime) -> None:
    app = make_app(rt, lambda: None, tokens=Tokens({SECRET: "panel"}))
    doc = openapi.document()
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert served(app) == documented
    assert doc["openapi"] == "3.1.0"
    # Each $ref names a schema the document has; each path parameter is declared.
    text = repr(doc)
    for name in re.findall(r"#/components/schemas/(\w+)", text):
        assert name in doc["components"]["schemas"], name
    for path, ops in doc["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for op in ops.values():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (path, op["operationId"])
            assert "401" in op["responses"] or op["operationId"] == "openapi"


def test_the_served_document_is_the_built_one(db_url: str, tmp_path: Path) -> None:
    with running_api(db_url, tmp_path) as api:
        reply = api.call("GET", "/openapi.json", token=None)
        assert reply.status == 200 and reply.json == openapi.document()
