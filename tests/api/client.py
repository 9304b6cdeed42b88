"""A small HTTP client for the panel API tests, and a running daemon to call.

Plain ``urllib`` on loopback against the real daemon (aiohttp server, real database),
so every test goes through the same door a panel would.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailgate.daemon.runtime import Runtime
from mailgate.tickets import operators
from mailgate.verify import directory
from tests.conftest import make_runtime, make_settings
from tests.support import DaemonThread

SECRET = "panel-secret-0123456789abcdef"
OTHER = "other-secret-0123456789abcdef"
ENV = {"MAILGATE_API_TOKENS": f"panel:{SECRET},ci:{OTHER}"}
OPERATOR = "ola@helpdesk.example"
CUSTOMER = "jan@customer.example"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Api:
    base: str
    rt: Runtime
    token: str | None = SECRET

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = "default",
    ) -> Reply:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        token = self.token if token == "default" else token
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=20) as r:
                return Reply(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, dict(exc.headers), exc.read())


def walk(api: Api, path: str, key: str, limit: int = 2) -> list[Any]:
    """``key`` of every item of a paged list, following ``next`` to the end; no page
    holds more than ``limit``."""
    seen: list[Any] = []
    url = f"{path}?limit={limit}"
    while True:
        page = api.call("GET", url).json
        assert len(page["items"]) <= limit
        seen += [item[key] for item in page["items"]]
        if page["next"] is None:
            return seen
        url = f"{path}?limit={limit}&cursor={page['next']}"


def seed(rt: Runtime) -> None:
    """One account with two addresses, and one operator in the technical queue."""
    with rt.sessions.begin() as session:
        directory.upsert(
            session,
            directory.AccountSpec(
                login="jkowalski",
                admin="admin@customer.example",
                name="Jan Kowalski",
                language="pl",
                addresses=((CUSTOMER, "technical"),),
            ),
            rt.clock(),
        )
        operators.add(session, OPERATOR, "Ola", ["technical"], rt.clock())


@contextmanager
def running_api(
    db_url: str,
    tmp_path: Path,
    *,
    environ: dict[str, str] | None = None,
    relay_port: int | None = None,
    clock: Any = None,
    **sections: Any,
) -> Iterator[Api]:
    env = ENV if environ is None else environ
    outbound = {"relay": f"127.0.0.1:{relay_port}"} if relay_port else {}
    api = {"tokens_env": "MAILGATE_API_TOKENS"} if env else {}
    settings = make_settings(
        db_url,
        tmp_path,
        environ=env,
        http={"listen": "127.0.0.1:0"},
        api={**api, **sections.pop("api", {})},
        outbound=outbound,
        **sections,
    )
    rt = make_runtime(settings, clock, environ=env)
    seed(rt)
    try:
        with DaemonThread(rt, environ=env) as d:
            yield Api(f"http://127.0.0.1:{d.port('http')}/api/v1", rt)
    finally:
        rt.close()
