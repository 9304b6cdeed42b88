"""Pipe mode as an MTA runs it: a real subprocess, the message on stdin, sysexits out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from mailgate.store.models import InboundMessage, Ticket
from tests.conftest import make_runtime, make_settings
from tests.support import make_mail

ROOT = Path(__file__).resolve().parents[2]


def run_cli(config: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "mailgate", "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def write_config(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "mailgate.toml"
    path.write_text(
        f'[database]\nurl = "{db_url}"\nconnect_timeout = 2\n'
        f'[outbound]\nmaildir = "{tmp_path / "sent"}"\n'
        # A subprocess cannot take the fake resolver: no DNS at all.
        "[verify]\ndns_lookups = false\n"
    )
    return path


def test_pipe_stores_then_drain_processes(db_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, db_url)
    raw = make_mail(subject="via pipe")
    done = run_cli(
        config,
        "ingest",
        "--from",
        "jan@customer.example",
        "--to",
        "support@helpdesk.example",
        stdin=raw,
    )
    assert done.returncode == 0, done.stderr
    rt = make_runtime(make_settings(db_url, tmp_path))
    try:
        with rt.sessions() as s:
            row = s.scalars(select(InboundMessage)).one()
            assert (row.source, row.raw, row.status) == ("pipe", raw, "received")
        drained = run_cli(config, "drain")
        assert drained.returncode == 0, drained.stderr
        assert b"processed 1 messages" in drained.stdout
        with rt.sessions() as s:
            assert s.scalars(select(Ticket.subject)).all() == ["via pipe"]
        assert len(list((tmp_path / "sent" / "new").iterdir())) == 1
    finally:
        rt.close()


def test_pipe_exit_75_when_database_is_unreachable(tmp_path: Path) -> None:
    # Port 9 (discard) is not a database anywhere on this machine: connection refused.
    config = write_config(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:9/none")
    done = run_cli(config, "ingest", "--to", "support@helpdesk.example", stdin=make_mail())
    assert done.returncode == 75, done.stderr
    assert b"try again later" in done.stderr


def test_pipe_exit_65_on_empty_input(db_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, db_url)
    done = run_cli(config, "ingest", "--to", "support@helpdesk.example", stdin=b"")
    assert done.returncode == 65
    assert b"empty-message" in done.stderr


def test_bad_config_exits_78_listing_problems(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[smtp]\nlisten = "x"\n[outbound]\ntls = "maybe"\n')
    done = run_cli(path, "tickets", "list")
    assert done.returncode == 78
    assert b"smtp.listen" in done.stderr and b"outbound.tls" in done.stderr


def test_batch_import_of_mbox_and_maildir_is_idempotent(db_url: str, tmp_path: Path) -> None:
    import mailbox

    config = write_config(tmp_path, db_url)
    mbox_path = tmp_path / "old.mbox"
    box = mailbox.mbox(mbox_path)
    for i in range(5):
        box.add(make_mail(subject=f"old {i}", sender=f"c{i}@customer.example"))
    box.close()
    md = mailbox.Maildir(tmp_path / "md")
    for i in range(3):
        md.add(make_mail(subject=f"md {i}", sender=f"m{i}@customer.example"))
    first = run_cli(config, "ingest", "--mbox", str(mbox_path))
    assert first.returncode == 0, first.stderr
    assert b"5 stored, 0 already present" in first.stdout
    again = run_cli(config, "ingest", "--mbox", str(mbox_path))
    assert b"0 stored, 5 already present" in again.stdout
    assert b"3 stored" in run_cli(config, "ingest", "--maildir", str(tmp_path / "md")).stdout
    assert run_cli(config, "drain").returncode == 0
    rt = make_runtime(make_settings(db_url, tmp_path))
    try:
        with rt.sessions() as s:
            assert len(s.scalars(select(Ticket)).all()) == 8
    finally:
        rt.close()
    # Historical mail is not acknowledged unless asked for.
    assert not (tmp_path / "sent" / "new").exists() or not any(
        (tmp_path / "sent" / "new").iterdir()
    )


def inbound_count(db_url: str, tmp_path: Path) -> int:
    rt = make_runtime(make_settings(db_url, tmp_path))
    try:
        with rt.sessions() as s:
            return len(s.scalars(select(InboundMessage)).all())
    finally:
        rt.close()


def test_pipe_refuses_an_unknown_recipient_with_67(db_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, db_url)
    args = ("--from", "jan@customer.example", "--to", "nobody@elsewhere.example")
    done = run_cli(config, "ingest", *args, stdin=make_mail())
    assert done.returncode == 67, done.stderr
    assert done.stderr.decode().strip().splitlines() == [
        "mailgate: nobody@elsewhere.example: no such helpdesk address ([helpdesk.queues])"
    ]
    # A tagged form of a helpdesk address passes, as it does at RCPT.
    tagged = run_cli(config, "ingest", "--to", "support+x@helpdesk.example", stdin=make_mail())
    assert tagged.returncode == 0, tagged.stderr
    assert inbound_count(db_url, tmp_path) == 1


def test_pipe_without_a_recipient_is_a_usage_error(db_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, db_url)
    done = run_cli(config, "ingest", "--from", "jan@customer.example", stdin=make_mail())
    assert done.returncode == 64, done.stderr
    assert b"--to" in done.stderr
    assert inbound_count(db_url, tmp_path) == 0


def test_maildir_import_of_a_folder_that_is_not_one(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    done = run_cli(write_config(tmp_path, db_url), "ingest", "--maildir", str(tmp_path / "plain"))
    assert done.returncode == 66
    assert (
        done.stderr.decode().strip()
        == f"mailgate: {tmp_path / 'plain'}: not a Maildir (no cur/new/tmp)"
    )
