"""The pipe through the running daemon: ``mailgate ingest`` as an MTA runs it, handing
the message over the ``[lmtp] socket`` (``ingest.deliver``), and storing it itself when
no daemon answers.  Real processes throughout: ``mailgate serve`` and one ``ingest``
process per message, the message on stdin, the sysexits code out."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_pipe import inbound_count, run_cli, write_config
from tests.process import Mailgate
from tests.support import make_mail

TO = "support@helpdesk.example"
LMTP_LIMIT = 20_000  # bytes: [lmtp] max_message_size of the daemon below


def with_socket(mailgate: Mailgate, path: Path, lmtp: str = "") -> None:
    """Give the daemon's config an ``[lmtp] socket`` (and more ``[lmtp]`` keys)."""
    mailgate.write_config()
    text = mailgate.config.read_text()
    mailgate.config.write_text(text.replace("[lmtp]\n", f'[lmtp]\nsocket = "{path}"\n{lmtp}', 1))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mailgate]:
    root = tmp_path_factory.mktemp("pipesock")
    mailgate = Mailgate(root)
    with_socket(mailgate, root / "run" / "lmtp.sock", f"max_message_size = {LMTP_LIMIT}\n")
    mailgate.start()
    try:
        yield mailgate
    finally:
        mailgate.stop()


def pipe(mailgate: Mailgate, raw: bytes, *to: str) -> subprocess.CompletedProcess[bytes]:
    """One ``ingest`` process, run by the console script as an MTA's pipe runs it."""
    command = str(Path(sys.executable).parent / "mailgate")
    args = ["--config", str(mailgate.config), "ingest", "--from", "jan@customer.example"]
    for address in to:
        args += ["--to", address]
    return subprocess.run([command, *args], input=raw, capture_output=True, timeout=60, check=False)


def stored(mailgate: Mailgate) -> dict[str, int]:
    """Inbound messages by source."""
    with sqlite3.connect(mailgate.store / "mailgate.db", timeout=10) as conn:
        rows = conn.execute("SELECT source, count(*) FROM inbound_message GROUP BY source")
        return dict(rows.fetchall())


def tickets_with(mailgate: Mailgate, subject: str, timeout: float = 30) -> int:
    """How many tickets carry ``subject`` once the daemon has processed every message."""
    deadline = time.monotonic() + timeout
    with sqlite3.connect(mailgate.store / "mailgate.db", timeout=10) as conn:
        while True:
            (open_,) = conn.execute(
                "SELECT count(*) FROM inbound_message WHERE status NOT IN ('done', 'quarantined')"
            ).fetchone()
            if not open_ or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        query = "SELECT count(*) FROM ticket WHERE subject = ?"
        return int(conn.execute(query, (subject,)).fetchone()[0])


def test_a_message_goes_through_the_daemon_once(daemon: Mailgate) -> None:
    before = stored(daemon)
    done = pipe(daemon, make_mail(subject="through the socket"), TO)
    assert done.returncode == 0, done.stderr
    assert b"stored as inbound message" in done.stderr
    after = stored(daemon)
    assert after.get("lmtp", 0) == before.get("lmtp", 0) + 1  # the daemon stored it
    assert after.get("pipe", 0) == before.get("pipe", 0)  # and the command did not
    assert tickets_with(daemon, "through the socket") == 1


def test_an_unknown_recipient_is_67_and_nothing_is_stored(daemon: Mailgate) -> None:
    before = stored(daemon)
    done = pipe(daemon, make_mail(), "nobody@elsewhere.example")
    assert done.returncode == 67, done.stderr
    assert b"550 5.1.1 <nobody@elsewhere.example>: no such helpdesk address" in done.stderr
    # All or nothing: one refused recipient of two, and the message is not stored.
    both = pipe(daemon, make_mail(), TO, "nobody@elsewhere.example")
    assert both.returncode == 67, both.stderr
    assert stored(daemon) == before


def test_two_recipients_get_one_stored_message(daemon: Mailgate) -> None:
    before = stored(daemon)
    done = pipe(daemon, make_mail(subject="for two"), TO, "billing@helpdesk.example")
    assert done.returncode == 0, done.stderr
    assert stored(daemon).get("lmtp", 0) == before.get("lmtp", 0) + 1
    assert tickets_with(daemon, "for two") == 1


def test_an_oversize_message_is_73_and_nothing_is_stored(daemon: Mailgate) -> None:
    before = stored(daemon)
    big = make_mail(body="a line of an over-long message\n" * (LMTP_LIMIT // 20))
    done = pipe(daemon, big, TO)
    assert done.returncode == 73, done.stderr
    assert b"552 5.3.4" in done.stderr
    assert stored(daemon) == before


def test_an_empty_message_is_65(daemon: Mailgate) -> None:
    before = stored(daemon)
    done = pipe(daemon, b"", TO)
    assert done.returncode == 65, done.stderr
    assert b"554 5.6.0 Empty message" in done.stderr
    assert stored(daemon) == before


def test_a_line_too_long_for_lmtp_is_stored_directly(daemon: Mailgate) -> None:
    before = stored(daemon)
    raw = b"X-Long: " + b"x" * 2000 + b"\r\n" + make_mail(subject="long line")
    done = pipe(daemon, raw, TO)
    assert done.returncode == 0, done.stderr
    assert stored(daemon).get("pipe", 0) == before.get("pipe", 0) + 1


# The hot path, run in a fresh interpreter that reports what it loaded beyond start-up.
IMPORTS = """
import json, sys
before = set(sys.modules)
from mailgate.__main__ import main
sys.argv = ["mailgate", *sys.argv[1:]]
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "loaded": sorted(set(sys.modules) - before)}))
"""
OWN_LIGHT = {"mailgate", "mailgate.__main__", "mailgate.ingest", "mailgate.ingest.deliver"}


def test_the_hot_path_loads_only_the_standard_library(daemon: Mailgate) -> None:
    before = stored(daemon)
    args = ["--config", str(daemon.config), "ingest", "--to", TO]
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS, *args],
        input=make_mail(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    report = json.loads(done.stdout)
    assert report["code"] == 0, done.stderr
    assert stored(daemon).get("lmtp", 0) == before.get("lmtp", 0) + 1
    foreign = [
        name
        for name in report["loaded"]
        if name not in OWN_LIGHT and name.split(".")[0] not in sys.stdlib_module_names
    ]
    assert foreign == []
    assert "mailgate.ingest.deliver" in report["loaded"]


def config_without_daemon(db_url: str, tmp_path: Path) -> tuple[Path, Path]:
    """A config whose ``[lmtp] socket`` nobody listens on."""
    config = write_config(tmp_path, db_url)
    path = tmp_path / "lmtp.sock"
    with open(config, "a") as fh:
        fh.write(f'[lmtp]\nsocket = "{path}"\n')
    return config, path


def test_with_no_daemon_the_command_stores_the_message(db_url: str, tmp_path: Path) -> None:
    config, path = config_without_daemon(db_url, tmp_path)
    args = ("ingest", "--from", "jan@customer.example", "--to", TO)
    done = run_cli(config, *args, stdin=make_mail())
    assert done.returncode == 0, done.stderr
    assert b"no daemon answers" in done.stderr
    # A socket file left by a killed daemon: connection refused, stored directly too.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()
    again = run_cli(config, *args, stdin=make_mail())
    assert again.returncode == 0, again.stderr
    assert inbound_count(db_url, tmp_path) == 2


def test_no_daemon_and_no_database_is_75(tmp_path: Path) -> None:
    config, _ = config_without_daemon("postgresql+psycopg://postgres@127.0.0.1:9/none", tmp_path)
    done = run_cli(config, "ingest", "--to", TO, stdin=make_mail())
    assert done.returncode == 75, done.stderr
    assert b"try again later" in done.stderr


def test_the_socket_file_outlives_a_kill_and_not_a_stop(tmp_path: Path) -> None:
    mailgate = Mailgate(tmp_path / "mg")
    path = tmp_path / "lmtp.sock"
    with_socket(mailgate, path, 'socket_mode = "0600"\n')
    mailgate.start()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    mailgate.signal(signal.SIGKILL)
    assert mailgate.proc is not None
    mailgate.proc.wait(10)
    assert path.exists()  # stale: the next start must replace it
    mailgate.start()
    try:
        done = pipe(mailgate, make_mail(), TO)
        assert done.returncode == 0, done.stderr
        assert stored(mailgate) == {"lmtp": 1}
    finally:
        assert mailgate.stop() == 0
    assert not path.exists()
