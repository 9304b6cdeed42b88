"""The command line reads as one tool: every list and show has help and --json,
``tickets show`` beside ``ticket show``, a list says when it was cut, a ticket's text
view names its attachments, the outbox list has a header row, and mail content is
printed with its control characters escaped."""

from __future__ import annotations

import json
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import click
from click.testing import CliRunner

from mailgate import cli
from mailgate.daemon.runtime import Runtime
from mailgate.ingest.accept import Envelope, accept
from mailgate.pipeline.batches import run_pending
from tests.integration.test_cli import invoke, setup
from tests.support import make_mail

ENV = Envelope("jan@customer.example", ("support@helpdesk.example",))


def commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        found[f"{prefix}{name}"] = command
        if isinstance(command, click.Group):
            found.update(commands(command, f"{prefix}{name} "))
    return found


def test_every_list_and_show_has_help_and_json() -> None:
    views = {n: c for n, c in commands(cli.main).items() if n.endswith((" list", " show"))}
    assert {"tickets list", "tickets show", "ticket show", "quarantine show"} <= set(views)
    for name, command in views.items():
        assert command.help, name
        flags = {o for p in command.params for o in p.opts}
        assert "--json" in flags, name


def store(rt: Runtime, raw: bytes) -> None:
    accept(rt.sessions, raw, ENV, "smtp", clock=rt.clock)
    while run_pending(rt):
        pass


def test_tickets_show_and_a_cut_list(rt: Runtime, tmp_path: Path, db_url: str) -> None:
    config = setup(rt, tmp_path, db_url)
    store(rt, make_mail(subject="second", sender="ola@customer.example"))
    assert invoke(config, "tickets", "show", "1", "--json") == invoke(
        config, "ticket", "show", "1", "--json"
    )
    cut = invoke(config, "tickets", "list", "--limit", "1").splitlines()
    assert cut[0].startswith("#2 ")
    assert cut[1:] == ["(1 shown, the newest; more exist: --limit N shows more)"]
    assert invoke(config, "tickets", "list").splitlines()[-1] == "(2 shown)"


def test_outbox_list_has_a_header_row(rt: Runtime, tmp_path: Path, db_url: str) -> None:
    config = setup(rt, tmp_path, db_url)
    lines = invoke(config, "outbox", "list").splitlines()
    assert lines[0].split() == ["ID", "STATUS", "KIND", "RECIPIENT", "TRIES", "WHY"]
    assert lines[1].split()[1:4] == ["pending", "ack", "jan@customer.example"]


def test_ticket_text_escapes_control_characters_and_lists_attachments(
    rt: Runtime, tmp_path: Path, db_url: str
) -> None:
    config = setup(rt, tmp_path, db_url)
    msg = EmailMessage()
    msg["From"] = "Eve <eve@customer.example>"
    msg["To"] = "support@helpdesk.example"
    msg["Subject"] = "Invoice \x1b]0;owned\x07"
    msg.set_content("Look:\x1b[2J\x1b]0;retitled\x07 and \x00 here\n")
    msg.add_attachment(b"%PDF-1.4 ...", maintype="application", subtype="pdf", filename="f.pdf")
    store(rt, msg.as_bytes(policy=SMTP))
    shown = invoke(config, "tickets", "show", "2")
    assert "\x1b" not in shown and "\x07" not in shown and "\x00" not in shown
    assert "\\x1b[2J\\x1b]0;retitled\\x07" in shown
    assert "attachment: f.pdf (application/pdf, 12 bytes)" in shown
    listed = invoke(config, "tickets", "list")
    assert "\x1b" not in listed and "\x07" not in listed  # (the parser cleans headers)
    doc = json.loads(invoke(config, "tickets", "show", "2", "--json"))
    assert [a["filename"] for a in doc["articles"][0]["attachments"]] == ["f.pdf"]


def test_quarantine_and_account_show_print_text_by_default(
    rt: Runtime, tmp_path: Path, db_url: str
) -> None:
    config = setup(rt, tmp_path, db_url)
    [item] = json.loads(invoke(config, "quarantine", "list", "--json"))
    shown = invoke(config, "quarantine", "show", str(item["id"]))
    assert "reason       no-sender-identity" in shown.splitlines()
    invoke(config, "accounts", "add", "fero", "--admin", "fero@firma.sk", "--domain", "firma.sk")
    account = invoke(config, "accounts", "show", "fero").splitlines()
    assert "  admin      fero@firma.sk" in account and "  domain     firma.sk" in account
    result = CliRunner().invoke(cli.main, ["tickets", "show", "--help"])
    assert "articles with their attachments" in result.output
