"""Sending webhook events: outside any transaction, signed, in order per ticket.

The model is the outbox (``replies.outbox``).  ``claim`` takes due events in a short
transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) and pushes their next attempt
past the delivery timeout — a lease, so several daemons never send the same event at
once and a daemon killed mid-delivery leaves it to be sent again.  Only the oldest
pending event of each ticket and URL is taken, so a receiver sees a ticket's events in
order.  The POSTs go out together with a timeout; ``record`` then marks each sent, or
schedules its retry (``retry_base_seconds`` · 2^(attempt-1), capped), or gives it up
after ``lifetime_hours``.  The body is the stored payload serialized the same way every
time, signed ``X-Mailgate-Signature: sha256=<hex HMAC-SHA256 of the body>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
from sqlalchemy import delete, func, select, update

from mailgate.config import WebhookSettings
from mailgate.errors import MailgateError
from mailgate.store.db import translate_db_errors
from mailgate.store.models import WebhookEvent
from mailgate.webhooks.context import WebhookContext

log = logging.getLogger(__name__)

BATCH = 50
IDLE_SECONDS = 5.0  # the longest the loop sleeps: events written by another process
KEEP_SENT = timedelta(days=30)  # sent events stay listed this long
LEASE_MARGIN = timedelta(seconds=5)  # past the timeout: the record step's time


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    event_id: str
    type: str
    url: str
    body: bytes


def body_of(payload: dict[str, Any]) -> bytes:
    """The bytes sent (and signed): the same for every attempt of an event."""
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Deliverer:
    def __init__(self, rt: WebhookContext, environ: Mapping[str, str]) -> None:
        self.rt = rt
        # Read once at start-up, like every secret; checked by the config already.
        self.secrets = {
            h.url: environ[h.secret_env].encode()
            for h in rt.settings.webhooks
            if h.secret_env in environ
        }

    def _hooks(self) -> dict[str, WebhookSettings]:
        return {h.url: h for h in self.rt.settings.webhooks if h.url in self.secrets}

    def claim(self, batch: int = BATCH) -> list[Claimed]:
        hooks = self._hooks()
        if not hooks:
            return []
        now = self.rt.clock()
        with translate_db_errors(), self.rt.sessions.begin() as session:
            query = (
                select(WebhookEvent)
                .where(
                    WebhookEvent.status == "pending",
                    WebhookEvent.next_attempt_at <= now,
                    WebhookEvent.url.in_(hooks),
                )
                .order_by(WebhookEvent.id)
                .limit(batch * 4)
            )
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            due = list(session.scalars(query))
            tickets = {r.ticket_id for r in due if r.ticket_id is not None}
            heads = {
                (url, ticket): first
                for url, ticket, first in session.execute(
                    select(WebhookEvent.url, WebhookEvent.ticket_id, func.min(WebhookEvent.id))
                    .where(WebhookEvent.status == "pending", WebhookEvent.ticket_id.in_(tickets))
                    .group_by(WebhookEvent.url, WebhookEvent.ticket_id)
                )
            }
            chosen = [r for r in due if r.ticket_id is None or heads[(r.url, r.ticket_id)] == r.id][
                :batch
            ]
            for row in chosen:
                lease = timedelta(seconds=hooks[row.url].timeout) + LEASE_MARGIN
                row.next_attempt_at = now + lease
            return [Claimed(r.id, r.event_id, r.type, r.url, body_of(r.payload)) for r in chosen]

    async def send(self, client: aiohttp.ClientSession, item: Claimed) -> str | None:
        """POST one event; None when the receiver took it (2xx), else why not."""
        hook = self._hooks().get(item.url)
        if hook is None:
            return "webhook no longer configured"
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "mailgate-webhooks",
            "X-Mailgate-Event": item.type,
            "X-Mailgate-Event-Id": item.event_id,
            "X-Mailgate-Signature": signature(self.secrets[item.url], item.body),
        }
        try:
            async with client.post(
                item.url,
                data=item.body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=hook.timeout),
                allow_redirects=False,
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except TimeoutError:
            return f"no answer within {hook.timeout}s"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]

    def record(self, outcomes: list[tuple[Claimed, str | None]]) -> None:
        now = self.rt.clock()
        hooks = self._hooks()
        with translate_db_errors(), self.rt.sessions.begin() as session:
            for item, error in outcomes:
                row = session.get_one(WebhookEvent, item.id)
                row.attempts += 1
                row.last_error = error
                if error is None:
                    row.status, row.sent_at = "sent", now
                    continue
                hook = hooks.get(row.url)
                lifetime = timedelta(hours=hook.lifetime_hours if hook else 0)
                if now - row.created_at >= lifetime:
                    row.status = "failed"
                    log.warning("webhook %s event %s given up: %s", row.url, row.event_id, error)
                    continue
                assert hook is not None
                delay = hook.retry_base_seconds * 2 ** min(row.attempts - 1, 20)
                row.next_attempt_at = now + timedelta(seconds=min(delay, hook.retry_max_seconds))
                if row.ticket_id is not None:
                    # The ticket's later events wait behind this one (order per ticket).
                    session.execute(
                        update(WebhookEvent)
                        .where(
                            WebhookEvent.url == row.url,
                            WebhookEvent.ticket_id == row.ticket_id,
                            WebhookEvent.status == "pending",
                            WebhookEvent.id > row.id,
                            WebhookEvent.next_attempt_at < row.next_attempt_at,
                        )
                        .values(next_attempt_at=row.next_attempt_at)
                    )

    async def flush(self, client: aiohttp.ClientSession) -> int:
        claimed = await asyncio.to_thread(self.claim)
        if not claimed:
            return 0
        errors = await asyncio.gather(*(self.send(client, item) for item in claimed))
        await asyncio.to_thread(self.record, list(zip(claimed, errors, strict=True)))
        return len(claimed)

    def prune(self) -> int:
        """Delete events sent more than ``KEEP_SENT`` ago; failed ones stay (resendable)."""
        with translate_db_errors(), self.rt.sessions.begin() as session:
            done = session.execute(
                delete(WebhookEvent).where(
                    WebhookEvent.status == "sent",
                    WebhookEvent.sent_at < self.rt.clock() - KEEP_SENT,
                )
            )
            return int(getattr(done, "rowcount", 0) or 0)

    def next_due(self) -> float:
        """Seconds until the earliest pending event is due (at most IDLE_SECONDS)."""
        with translate_db_errors(), self.rt.sessions() as session:
            due = session.scalar(
                select(func.min(WebhookEvent.next_attempt_at)).where(
                    WebhookEvent.status == "pending"
                )
            )
        if due is None:
            return IDLE_SECONDS
        # Not less than half a second: an event due now may wait behind one in flight.
        return min(max((due - self.rt.clock()).total_seconds(), 0.5), IDLE_SECONDS)

    async def run(self, wake: asyncio.Event, stopping: asyncio.Event) -> None:
        """Deliver until ``stopping``; ``wake`` says a change may have written events."""
        async with aiohttp.ClientSession() as client:
            while not stopping.is_set():
                try:
                    while await self.flush(client) and not stopping.is_set():
                        pass
                    pause = await asyncio.to_thread(self.next_due)
                except MailgateError as exc:
                    log.warning("webhooks: %s; retrying shortly", exc)
                    pause = 5.0
                except Exception:  # the per-batch boundary: keep the daemon alive
                    log.exception("webhooks: unexpected failure; retrying shortly")
                    pause = 5.0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=pause)
                wake.clear()
