"""Webhooks against a real receiver on loopback that fails, times out and restarts:
every event arrives, each id is delivered until acknowledged, a ticket's events in
order, every body signed."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import threading
import time
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import select

from mailgate.cli import main
from mailgate.config import DatabaseSettings
from mailgate.store.db import make_engine
from mailgate.store.models import WebhookEvent
from mailgate.webhooks.deliver import signature
from tests.api.client import CUSTOMER, ENV, OPERATOR, SECRET, Api, running_api
from tests.api.test_tickets import REQUEST
from tests.process import Mailgate
from tests.support import FakeClock, free_port, wait_until

HOOK_SECRET = "hook-secret-0123456789abcdef"


class Receiver:
    """A webhook endpoint whose behaviour the test switches: ok, fail (500), slow."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.mode = "ok"
        self.seen: list[dict[str, Any]] = []  # every request, acknowledged or not
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                mode = receiver.mode
                receiver.seen.append(
                    {
                        "body": json.loads(body),
                        "mode": mode,
                        "event": self.headers["X-Mailgate-Event"],
                        "id": self.headers["X-Mailgate-Event-Id"],
                        "signed": hmac.compare_digest(
                            self.headers["X-Mailgate-Signature"],
                            "sha256="
                            + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest(),
                        ),
                    }
                )
                if mode == "slow":
                    time.sleep(2.5)  # past the webhook's 1 s timeout
                status = 500 if mode == "fail" else 204
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    def acknowledged(self) -> list[str]:
        return [s["id"] for s in self.seen if s["mode"] == "ok"]


def rows(api: Api) -> list[WebhookEvent]:
    with api.rt.sessions() as session:
        return list(session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def test_failing_slow_and_restarted_receiver_loses_nothing(db_url: str, tmp_path: Path) -> None:
    receiver = Receiver(free_port())
    receiver.mode = "fail"
    receiver.start()
    environ = {**ENV, "HOOK_SECRET": HOOK_SECRET}
    hook = {
        "url": f"http://127.0.0.1:{receiver.port}/hook",
        "secret_env": "HOOK_SECRET",
        "timeout": 1,
        "retry_base_seconds": 1,
        "retry_max_seconds": 1,
    }
    with running_api(db_url, tmp_path, environ=environ, webhooks=[hook]) as api:
        number = api.call("POST", "/tickets", REQUEST).json["number"]
        wait_until(lambda: len(receiver.seen) >= 2, what="failed deliveries")
        receiver.mode = "slow"
        api.call("POST", f"/tickets/{number}/replies", {"author": OPERATOR, "body": "On it."})
        wait_until(lambda: any(s["mode"] == "slow" for s in receiver.seen), what="timeouts")
        receiver.stop()  # down: connection refused
        api.call("PATCH", f"/tickets/{number}", {"status": "pending"})
        second = api.call("POST", "/tickets", REQUEST).json["number"]
        time.sleep(1.5)
        receiver.mode = "ok"
        receiver.start()  # back on the same port
        wait_until(
            lambda: rows(api) and all(r.status == "sent" for r in rows(api)),
            timeout=40,
            what="every event sent",
        )
        stored = rows(api)
    receiver.stop()
    # Nothing lost: every event was acknowledged; nothing doubled once de-duplicated.
    ids = [r.event_id for r in stored]
    assert len(set(ids)) == len(ids)
    assert sorted(set(receiver.acknowledged())) == sorted(ids)
    assert len(receiver.acknowledged()) == len(ids)  # after a 2xx, never sent again
    assert all(s["signed"] for s in receiver.seen)
    assert any(r.attempts > 1 for r in stored)
    types = {r.type for r in stored}
    assert types == {"ticket.created", "article.created", "ticket.updated"}
    # In order per ticket: the first arrival of each id follows the order of the changes.
    for ticket in (number, second):
        expected = [r.event_id for r in stored if r.payload["ticket"]["number"] == ticket]
        arrivals = [s["id"] for s in receiver.seen if s["body"]["ticket"]["number"] == ticket]
        assert list(dict.fromkeys(arrivals)) == expected
    # The reply opened the ticket, the PATCH made it pending: two updates, in that order.
    updates = [r.payload["ticket"]["status"] for r in stored if r.type == "ticket.updated"]
    assert updates == ["open", "pending"]
    created = next(s["body"] for s in receiver.seen if s["event"] == "ticket.created")
    assert created["ticket"]["account"] == "jkowalski" and created["type"] == "ticket.created"
    assert signature(HOOK_SECRET.encode(), b"{}") == (
        "sha256=" + hmac.new(HOOK_SECRET.encode(), b"{}", hashlib.sha256).hexdigest()
    )


def test_given_up_after_lifetime_listed_and_resent(db_url: str, tmp_path: Path) -> None:
    # The daemon's clock is moved past the lifetime; the CLI's is the real one.
    clock = FakeClock(datetime.now(UTC))
    receiver = Receiver(free_port())
    receiver.mode = "fail"
    receiver.start()
    environ = {**ENV, "HOOK_SECRET": HOOK_SECRET}
    hook = {
        "url": f"http://127.0.0.1:{receiver.port}/hook",
        "secret_env": "HOOK_SECRET",
        "events": ["ticket.created"],
        "timeout": 1,
        "retry_base_seconds": 1,
        "lifetime_hours": 1,
    }
    config = tmp_path / "mailgate.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    cli = CliRunner()
    try:
        with running_api(db_url, tmp_path, environ=environ, clock=clock, webhooks=[hook]) as api:
            api.call("POST", "/tickets", REQUEST)
            [row] = rows(api)  # only the subscribed type was written
            assert row.type == "ticket.created"
            wait_until(lambda: rows(api)[0].attempts >= 1, what="a failed attempt")
            clock.advance(hours=2)
            wait_until(lambda: rows(api)[0].status == "failed", what="given up")
            listed = cli.invoke(main, ["--config", str(config), "webhooks", "list", "--json"])
            assert listed.exit_code == 0, listed.output
            [doc] = json.loads(listed.output)
            assert (doc["status"], doc["last_error"]) == ("failed", "HTTP 500")
            text = cli.invoke(main, ["--config", str(config), "webhooks", "list"]).output
            assert "failed" in text and "ticket.created" in text
            receiver.mode = "ok"
            resent = cli.invoke(
                main, ["--config", str(config), "webhooks", "resend", str(doc["id"])]
            )
            assert resent.exit_code == 0 and "1 webhook event(s)" in resent.output
            wait_until(lambda: rows(api)[0].status == "sent", timeout=40, what="resent")
    finally:
        receiver.stop()
    assert receiver.acknowledged() == [row.event_id]


def test_daemon_killed_mid_delivery_loses_nothing(tmp_path: Path) -> None:
    receiver = Receiver(free_port())
    receiver.mode = "slow"  # holds every delivery past the timeout
    receiver.start()
    mailgate = Mailgate(tmp_path / "mg")
    mailgate.write_config(
        '[api]\ntokens_env = "MAILGATE_API_TOKENS"\n'
        f'[[webhooks]]\nurl = "http://127.0.0.1:{receiver.port}/hook"\n'
        'secret_env = "HOOK_SECRET"\ntimeout = 2\nretry_base_seconds = 1\n'
        "retry_max_seconds = 1\n"
    )
    saved = dict(os.environ)
    os.environ.update({"MAILGATE_API_TOKENS": f"panel:{SECRET}", "HOOK_SECRET": HOOK_SECRET})
    try:
        mailgate.start()
        assert mailgate.cli("accounts", "add", "jkowalski", "--admin", CUSTOMER).returncode == 0
        api = f"http://127.0.0.1:{mailgate.http_port}/api/v1/tickets"
        opened = urllib.request.Request(
            api,
            data=json.dumps(REQUEST).encode(),
            headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(opened, timeout=10) as reply:
            assert reply.status == 201
        wait_until(lambda: receiver.seen, what="a delivery in flight")
        assert mailgate.proc is not None
        mailgate.proc.send_signal(signal.SIGKILL)  # mid-delivery: no time to record it
        mailgate.proc.wait(10)
        receiver.mode = "ok"
        mailgate.start()
        engine = make_engine(DatabaseSettings(url=mailgate.db_url))
        try:

            def stored() -> list[tuple[str, str]]:
                with engine.connect() as conn:
                    return [
                        (row.event_id, row.status)
                        for row in conn.execute(select(WebhookEvent).order_by(WebhookEvent.id))
                    ]

            wait_until(
                lambda: stored() and all(s == "sent" for _, s in stored()),
                timeout=40,
                what="every event sent after the restart",
            )
            ids = [event_id for event_id, _ in stored()]
        finally:
            engine.dispose()
    finally:
        mailgate.stop()
        receiver.stop()
        os.environ.clear()
        os.environ.update(saved)
    assert len(ids) == 3  # ticket.created, the request, the acknowledgement
    assert sorted(set(receiver.acknowledged())) == sorted(ids)
    assert any(s["mode"] == "slow" for s in receiver.seen)
