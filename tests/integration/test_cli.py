"""The command line's stable interface: JSON views of tickets, parse, quarantine,
and the health endpoints of the running daemon."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from click.testing import CliRunner

from mailgate import cli
from mailgate.daemon.runtime import Runtime
from mailgate.ingest.accept import Envelope, accept
from mailgate.pipeline.batches import run_pending
from tests.conftest import make_runtime, make_settings
from tests.support import DaemonThread, make_mail

ENV = Envelope("jan@customer.example", ("support@helpdesk.example",))


def invoke(config: Path | None, *args: str) -> str:
    prefix = ["--config", str(config)] if config else []
    result = CliRunner().invoke(cli.main, [*prefix, *args], env={"MAILGATE_CONFIG": None})
    assert result.exit_code == 0, result.output
    return result.output


def setup(rt: Runtime, tmp_path: Path, db_url: str) -> Path:
    accept(rt.sessions, make_mail(subject="Domena wygasła"), ENV, "smtp", clock=rt.clock)
    accept(
        rt.sessions,
        make_mail(sender="a@b.example").replace(
            b"From: a@b.example", b"From: a@b.example\r\nFrom: c@d.example"
        ),
        ENV,
        "smtp",
        clock=rt.clock,
    )
    while run_pending(rt):
        pass
    config = tmp_path / "cli.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n[outbound]\nmaildir = "{tmp_path}/sent"\n')
    return config


def test_tickets_list_and_show_json(rt: Runtime, tmp_path: Path, db_url: str) -> None:
    config = setup(rt, tmp_path, db_url)
    [ticket] = json.loads(invoke(config, "tickets", "list", "--json"))
    assert ticket["number"] == 1
    assert ticket["subject"] == "Domena wygasła"
    assert ticket["status"] == "new"
    assert ticket["queue"] == "technical"
    assert ticket["priority"] == "normal"
    assert ticket["requester"] == "jan@customer.example"
    assert ticket["created_at"].startswith("2026-11-23T09:00:00")
    shown = json.loads(invoke(config, "ticket", "show", "1", "--json"))
    assert {k: shown[k] for k in ticket} == ticket
    directions = [(a["direction"], a["author"], a["internal"]) for a in shown["articles"]]
    assert directions == [
        ("in", "jan@customer.example", False),
        ("out", "support@helpdesk.example", False),
    ]
    assert "192.0.2.10" in shown["articles"][0]["text"]
    assert "Domena wygasła" in invoke(config, "tickets", "list")
    # The acknowledgement was never sent here, so the export holds the inbound mail only.
    out = tmp_path / "t1.mbox"
    assert "1 message(s) of ticket 1" in invoke(config, "export", "1", "--output", str(out))
    assert b"Subject: Domena" in out.read_bytes()


def test_quarantine_list_and_show(rt: Runtime, tmp_path: Path, db_url: str) -> None:
    config = setup(rt, tmp_path, db_url)
    [item] = json.loads(invoke(config, "quarantine", "list", "--json"))
    assert item["reason"] == "no-sender-identity"
    assert item["status"] == "quarantined"
    shown = json.loads(invoke(config, "quarantine", "show", str(item["id"]), "--json"))
    assert "from:multiple-headers" in shown["rule_hits"]
    raw = CliRunner().invoke(
        cli.main, ["--config", str(config), "quarantine", "show", str(item["id"]), "--raw"]
    )
    assert b"From: c@d.example" in raw.stdout_bytes


def test_parse_json_has_the_documented_keys(tmp_path: Path) -> None:
    path = tmp_path / "m.eml"
    path.write_bytes(make_mail(headers={"Reply-To": "other@customer.example"}))
    doc = json.loads(invoke(None, "parse", str(path), "--json"))
    for key in (
        "message_id", "from", "reply_to", "to", "cc", "subject", "date", "in_reply_to",
        "references", "text", "body_text", "html", "attachments", "kind", "bounce",
        "language", "defects",
    ):  # fmt: skip
        assert key in doc, key
    assert doc["from"] == {"name": "Jan Kowalski", "address": "jan@customer.example"}
    assert doc["reply_to"] == [{"name": "", "address": "other@customer.example"}]
    assert doc["kind"] == "human"
    assert doc["bounce"] is None
    assert doc["language"] == "pl"


def test_health_endpoints(db_url: str, tmp_path: Path) -> None:
    rt = make_runtime(make_settings(db_url, tmp_path, http={"listen": "127.0.0.1:0"}))
    try:
        with DaemonThread(rt) as d:
            base = f"http://127.0.0.1:{d.port('http')}"
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as r:
                assert r.status == 200
            with urllib.request.urlopen(f"{base}/readyz", timeout=5) as r:
                assert r.status == 200 and r.read() == b"ready\n"
    finally:
        rt.close()
