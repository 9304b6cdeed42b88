"""``mailgate imap poll-once``: the command an operator or cron runs against Dovecot."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from mailgate import cli
from mailgate.store.models import InboundMessage
from tests.conftest import make_runtime, make_settings
from tests.dovecot import PASSWORD, Dovecot
from tests.support import make_mail


def test_poll_once_imports_and_reports_per_folder(
    db_url: str, tmp_path: Path, dovecot: Dovecot, user: str
) -> None:
    dovecot.append(user, "INBOX", [make_mail(message_id="<cli-1@customer.example>")])
    dovecot.append(user, "Billing", [make_mail(message_id="<cli-2@customer.example>")])
    config = tmp_path / "imap.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[[imap]]\nname = "desk"\nhost = "127.0.0.1"\nport = {dovecot.port}\ntls = "none"\n'
        f'username = "{user}"\npassword_env = "DESK_IMAP_PASSWORD"\n'
        'folders = ["INBOX", "Billing"]\nafter = "move:Done"\n'
        'address = "billing@helpdesk.example"\n'
    )
    env = {"MAILGATE_CONFIG": None, "DESK_IMAP_PASSWORD": PASSWORD}
    run = CliRunner().invoke(cli.main, ["--config", str(config), "imap", "poll-once"], env=env)
    assert run.exit_code == 0, run.output
    assert run.stdout.splitlines() == [
        "desk/INBOX: 1 stored, 0 already present, 0 skipped",
        "desk/Billing: 1 stored, 0 already present, 0 skipped",
    ]
    rt = make_runtime(make_settings(db_url, tmp_path))
    try:
        with rt.sessions() as s:
            stored = s.execute(
                select(InboundMessage.message_id, InboundMessage.rcpt_to).order_by(
                    InboundMessage.id
                )
            ).all()
    finally:
        rt.close()
    # The account's address stands in for the envelope recipient the MTA would give.
    assert [tuple(r) for r in stored] == [
        ("cli-1@customer.example", ["billing@helpdesk.example"]),
        ("cli-2@customer.example", ["billing@helpdesk.example"]),
    ]

    unknown = CliRunner().invoke(
        cli.main, ["--config", str(config), "imap", "poll-once", "--account", "nope"], env=env
    )
    assert unknown.exit_code == cli.EX_CONFIG
    assert "no such [[imap]] account: nope" in unknown.output


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the database is not the point
def test_poll_once_exits_75_when_the_server_is_away(
    db_url: str, tmp_path: Path, dovecot: Dovecot
) -> None:
    config = tmp_path / "imap.toml"
    closed_port = 1  # nothing listens there: connection refused at once
    config.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[[imap]]\nname = "desk"\nhost = "127.0.0.1"\nport = {closed_port}\ntls = "none"\n'
        'username = "x"\npassword_env = "DESK_IMAP_PASSWORD"\n'
    )
    env = {"MAILGATE_CONFIG": None, "DESK_IMAP_PASSWORD": PASSWORD}
    run = CliRunner().invoke(cli.main, ["--config", str(config), "imap", "poll-once"], env=env)
    assert run.exit_code == cli.EX_TEMPFAIL
    [line] = run.stdout.splitlines()
    assert line.startswith("desk/INBOX: 0 stored, 0 already present, 0 skipped; incomplete:")
    assert "Connection refused" in line
