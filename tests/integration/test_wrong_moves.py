"""Every wrong move on the command line gets one clear answer and a non-zero exit, and
changes nothing: unknown ids, rows in a state the command cannot act on, import columns
nobody reads, a file that is not mail."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy import select

from mailgate import cli
from mailgate.daemon.runtime import Runtime
from mailgate.store.models import Event, InboundMessage, OutboxMessage
from tests.integration.test_cli import setup

RUNNER = CliRunner()


def call(config: Path | None, *args: str) -> Result:
    prefix = ["--config", str(config)] if config else []
    return RUNNER.invoke(cli.main, [*prefix, *args], env={"MAILGATE_CONFIG": None})


def error_line(result: Result) -> str:
    [line] = result.stderr.strip().splitlines()
    return line


def test_outbox_retry_and_drop_refuse_unknown_ids_and_wrong_states(
    rt: Runtime, tmp_path: Path, db_url: str
) -> None:
    config = setup(rt, tmp_path, db_url)
    with rt.sessions.begin() as s:
        ack = s.scalars(select(OutboxMessage)).one()
        ack.status = "sent"
        ack_id = ack.id
    retried = call(config, "outbox", "retry", str(ack_id), "999")
    assert retried.exit_code == 1
    assert error_line(retried) == (
        f"mailgate: nothing queued again: outgoing mail {ack_id} is sent; no outgoing mail "
        "999 (only failed, suppressed, bounced, pending can be)"
    )
    dropped = call(config, "outbox", "drop", str(ack_id))
    assert dropped.exit_code == 1
    assert f"outgoing mail {ack_id} is sent" in error_line(dropped)
    with rt.sessions() as s:
        assert s.scalars(select(OutboxMessage.status)).all() == ["sent"]
        assert s.scalars(select(Event)).all() == []


def test_quarantine_replay_refuses_unknown_ids_and_drop_keeps_the_record(
    rt: Runtime, tmp_path: Path, db_url: str
) -> None:
    config = setup(rt, tmp_path, db_url)
    [item] = json.loads(call(config, "quarantine", "list", "--json").output)
    done_id = next(i for i in (1, 2) if i != item["id"])
    replayed = call(config, "quarantine", "replay", str(item["id"]), "999", str(done_id))
    assert replayed.exit_code == 1
    assert error_line(replayed) == (
        f"mailgate: nothing replayed: no inbound message 999; inbound message {done_id} is "
        "done (only quarantined can be)"
    )
    assert call(config, "quarantine", "replay").exit_code == 2  # neither ids nor --all
    dropped = call(config, "quarantine", "drop", str(item["id"]))
    assert dropped.exit_code == 0, dropped.output
    assert dropped.output == "1 message(s) dropped\n"
    assert json.loads(call(config, "quarantine", "list", "--json").output) == []
    with rt.sessions() as s:
        row = s.get(InboundMessage, item["id"])
        assert row is not None
        assert (row.status, row.reason) == ("dropped", "no-sender-identity")
        assert row.raw  # the record and its bytes stay until retention purges them
        [event] = s.scalars(select(Event).where(Event.inbound_id == item["id"])).all()
        assert event.kind == "dropped"
    again = call(config, "quarantine", "replay", str(item["id"]))
    assert again.exit_code == 1
    assert f"inbound message {item['id']} is dropped" in error_line(again)


def test_accounts_import_refuses_unknown_columns(rt: Runtime, tmp_path: Path, db_url: str) -> None:
    config = setup(rt, tmp_path, db_url)
    path = tmp_path / "a.csv"
    path.write_text("login,admin,address,domain\nfero,fero@firma.sk,ucto@firma.sk,firma.sk\n")
    result = call(config, "accounts", "import", str(path))
    assert result.exit_code == 65
    line = error_line(result)
    assert "unknown column(s) 'address' (did you mean 'addresses'?), 'domain'" in line
    assert json.loads(call(config, "accounts", "list", "--json").output) == []


def test_parse_says_a_binary_is_not_mail(tmp_path: Path) -> None:
    path = tmp_path / "logo.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00")
    result = call(None, "parse", str(path))
    assert result.exit_code == 65
    assert error_line(result) == (
        f"mailgate: {path}: not a mail message (it does not start with header lines)"
    )
    as_json = call(None, "parse", str(path), "--json")
    assert json.loads(as_json.stdout)["error"] == "not-a-mail-message"
    mbox_style = tmp_path / "m.eml"
    mbox_style.write_bytes(b"From jan@x Mon Jan  1 00:00:00 2026\nSubject: hi\n\nbody\n")
    assert call(None, "parse", str(mbox_style)).exit_code == 0
