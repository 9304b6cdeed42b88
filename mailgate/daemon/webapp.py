"""The daemon's HTTP side (aiohttp): health checks, Prometheus metrics, the
confirmation page, and the panel API (``daemon.api``) when it has tokens.

The confirmation page is where an account's administrator answers a challenge from a
browser.  GET only shows the request; nothing changes until the form is POSTed,
because mail scanners and link previewers open every link in a mail.  The page is
plain HTML from our autoescaped templates, works without JavaScript, and is sent with
headers that keep the token out of caches, referrers and frames.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import func, select, text

from mailgate.daemon import api
from mailgate.daemon.runtime import Runtime
from mailgate.store.db import translate_db_errors
from mailgate.store.models import Account, OutboxMessage, Ticket
from mailgate.tickets import challenges

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}


def make_app(
    rt: Runtime,
    on_change: Callable[[], None],
    not_ready: Callable[[], str | None] = lambda: None,
    tokens: api.Tokens | None = None,
) -> web.Application:
    """``on_change`` is called after an answer queued mail (wakes the outbox);
    ``not_ready`` says why the daemon itself is not ready (draining, listener down);
    ``tokens`` open the panel API under /api/v1 (none: no API)."""
    app = web.Application(client_max_size=64 * 1024)
    if tokens:
        api.mount(app, rt, tokens, on_change)
    handlers = _Handlers(rt, on_change, not_ready)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/metrics", handlers.metrics)
    app.router.add_get("/confirm/{token}", handlers.show)
    app.router.add_post("/confirm/{token}", handlers.act)
    return app


class _Handlers:
    def __init__(
        self, rt: Runtime, on_change: Callable[[], None], not_ready: Callable[[], str | None]
    ) -> None:
        self.rt = rt
        self.on_change = on_change
        self.not_ready = not_ready

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        """Ready = daemon serving, database answers, due mail is being sent."""
        reason = self.not_ready()
        if reason:
            return web.Response(status=503, text=f"{reason}\n")
        stuck_after = timedelta(seconds=self.rt.settings.daemon.outbox_stuck_seconds)

        def probe() -> int:
            now = self.rt.clock()
            with self.rt.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                # Mail that is due but untouched for long means the sender is wedged; a
                # relay that refuses pushes next_attempt_at forward and does not count.
                return int(
                    conn.scalar(
                        select(func.count())
                        .select_from(OutboxMessage)
                        .where(
                            OutboxMessage.status == "pending",
                            OutboxMessage.next_attempt_at < now - stuck_after,
                        )
                    )
                    or 0
                )

        try:
            stuck = await asyncio.wait_for(asyncio.to_thread(probe), timeout=5)
        except Exception as exc:  # noqa: BLE001 -- any failure means "not ready"; say why
            return web.Response(status=503, text=f"database: {exc}\n")
        if stuck:
            return web.Response(status=503, text=f"outbox: {stuck} messages overdue\n")
        return web.Response(text="ready\n")

    async def metrics(self, request: web.Request) -> web.Response:
        # Off the loop: the store gauges query the database.
        body = await asyncio.wait_for(asyncio.to_thread(self.rt.metrics.render), timeout=10)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def show(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        info = await asyncio.to_thread(self._describe, token)
        status = 404 if info["state"] == "invalid" else 200
        return self._page(info, status)

    async def act(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        form = await request.post()
        action = form.get("action")
        if action not in ("confirm", "refuse"):
            raise web.HTTPBadRequest(text="action must be confirm or refuse\n")
        trust = form.get("trust") == "yes"

        def apply() -> challenges.Outcome:
            with translate_db_errors(), self.rt.sessions.begin() as session:
                return challenges.answer(session, self.rt, token, action, trust=trust)  # type: ignore[arg-type]

        outcome = await asyncio.to_thread(apply)
        if outcome.result in ("confirmed", "refused"):
            self.on_change()
        info = await asyncio.to_thread(self._describe, token)
        info["outcome"] = outcome.result
        return self._page(info, 200 if outcome.result in ("confirmed", "refused") else 409)

    def _describe(self, token: str) -> dict[str, Any]:
        with self.rt.sessions() as session:
            row = challenges.lookup(session, token)
            if row is None:
                return {"state": "invalid", "language": None, "outcome": None}
            ticket = session.get_one(Ticket, row.ticket_id)
            account = session.get_one(Account, row.account_id)
            if row.used_at is not None:
                state = row.outcome or "used"
            elif row.expires_at <= self.rt.clock():
                state = "expired"
            else:
                state = "open"
            return {
                "state": state,
                "outcome": None,
                "language": account.language or ticket.language,
                "number": ticket.number,
                "login": account.login,
                "requester": ticket.requester,
                "subject": ticket.subject[:200],
                "expires": row.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
            }

    def _page(self, info: dict[str, Any], status: int) -> web.Response:
        context = {k: v for k, v in info.items() if k != "language"}
        html = self.rt.renderer.page("confirm", info.get("language"), **context)
        return web.Response(
            text=html, status=status, content_type="text/html", headers=PAGE_HEADERS
        )
