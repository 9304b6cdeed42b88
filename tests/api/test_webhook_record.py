"""Webhook events are written with the change they report, whichever door it came
through (here: mail through the pipeline), and never for a change that rolled back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailgate.daemon.api import idempotency
from mailgate.daemon.runtime import Runtime
from mailgate.store.models import ApiRequest, Ticket, WebhookEvent
from mailgate.tickets import operators
from mailgate.webhooks import record
from mailgate.webhooks.deliver import Deliverer
from tests.conftest import make_runtime, make_settings
from tests.db.test_pipeline import deliver
from tests.support import FakeClock, make_mail

ENVIRON = {"HOOK_SECRET": "hook-secret-0123456789abcdef"}


@pytest.fixture
def hooked(db_url: str, tmp_path: Path, clock: FakeClock) -> Any:
    hook = {"url": "https://panel.example/hook", "secret_env": "HOOK_SECRET"}
    settings = make_settings(db_url, tmp_path, environ=ENVIRON, webhooks=[hook])
    rt = make_runtime(settings, clock, environ=ENVIRON)
    record.install(rt)
    record.install(rt)  # twice is once
    yield rt
    rt.close()


def events(rt: Runtime) -> list[WebhookEvent]:
    with rt.sessions() as session:
        return list(session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def test_mail_writes_events_in_its_transaction(hooked: Runtime) -> None:
    deliver(hooked, make_mail(subject="Server down", body="Nothing answers.\n"))
    found = events(hooked)
    assert [e.type for e in found] == ["ticket.created", "article.created", "article.created"]
    assert len({e.event_id for e in found}) == 3
    created = found[0].payload
    assert created["type"] == "ticket.created" and created["id"] == found[0].event_id
    assert created["ticket"]["subject"] == "Server down" and "_id" not in created["ticket"]
    directions = [e.payload["article"]["direction"] for e in found[1:]]
    assert directions == ["in", "out"]  # the customer's mail, then our acknowledgement
    assert all(e.status == "pending" and e.url == "https://panel.example/hook" for e in found)


def test_quarantine_and_status_changes_are_events(hooked: Runtime) -> None:
    raw = make_mail(sender="victim@customer.example").replace(
        b"From: victim@customer.example",
        b"From: victim@customer.example\r\nFrom: attacker@evil.example",
    )
    deliver(hooked, raw)
    [quarantined] = events(hooked)
    assert quarantined.type == "message.quarantined" and quarantined.ticket_id is None
    assert quarantined.payload["message"]["reason"] == "no-sender-identity"
    deliver(hooked, make_mail())
    before = len(events(hooked))
    with hooked.sessions.begin() as session:
        ticket = session.scalars(select(Ticket)).one()
        operators.set_status(ticket, "pending", hooked.clock())
    [updated] = events(hooked)[before:]
    assert updated.type == "ticket.updated"
    assert updated.payload["ticket"]["status"] == "pending"
    # A change that rolls back leaves no event.
    with pytest.raises(RuntimeError), hooked.sessions.begin() as session:
        ticket = session.scalars(select(Ticket)).one()
        operators.set_status(ticket, "closed", hooked.clock())
        session.flush()
        raise RuntimeError("abandon")
    assert len(events(hooked)) == before + 1
    # updated_at alone is not an update worth telling.
    with hooked.sessions.begin() as session:
        session.scalars(select(Ticket)).one().updated_at = hooked.clock()
    assert len(events(hooked)) == before + 1


def test_old_keys_and_delivered_events_are_pruned(hooked: Runtime, clock: FakeClock) -> None:
    deliver(hooked, make_mail())
    now = hooked.clock()
    with hooked.sessions.begin() as session:
        session.add(
            ApiRequest(
                token="panel", key="k", fingerprint="f", status=201, response={}, created_at=now
            )
        )
        rows = list(session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))
        rows[0].status, rows[0].sent_at = "sent", now
        rows[1].status = "failed"
    deliverer = Deliverer(hooked, ENVIRON)
    assert (idempotency.prune(hooked), deliverer.prune()) == (0, 0)
    clock.advance(days=31)
    assert (idempotency.prune(hooked), deliverer.prune()) == (1, 1)
    assert [e.status for e in events(hooked)] == ["failed", "pending"]
