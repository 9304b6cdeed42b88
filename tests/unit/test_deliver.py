"""The pipe's hot path without a daemon: the command line it takes, how replies become
exit codes, the DATA it sends, and the socket file the daemon makes for it."""

from __future__ import annotations

import errno
import os
import socket
import stat
import time
from pathlib import Path

import pytest

from mailgate.ingest import deliver, lmtpsocket
from mailgate.ingest.deliver import PipeArgs, Reply, exit_code, lmtp_data, pipe_form

TO = "support@helpdesk.example"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--config", "c.toml", "ingest", "--from", "a@x.example", "--to", TO],
            PipeArgs("c.toml", "a@x.example", (TO,)),
        ),
        # Postfix's argv form, --config after the command, the null sender, two --to.
        (
            ["ingest", "--from=", "--to=Support@Helpdesk.example", "--config=c.toml", "--to", TO],
            PipeArgs("c.toml", "", (TO, TO)),
        ),
        (["ingest", "--acknowledge", "--to", TO], PipeArgs("env.toml", "", (TO,))),
    ],
)
def test_the_pipe_form_is_recognised(argv: list[str], expected: PipeArgs) -> None:
    found = pipe_form(argv, {"MAILGATE_CONFIG": "env.toml"})
    assert found is not None
    assert (found.config, found.mail_from, found.rcpt_to) == (
        expected.config,
        expected.mail_from,
        expected.rcpt_to,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["ingest", "--from", "a@x.example"],  # no --to: the full command says 64
        ["ingest", "--mbox", "old.mbox"],
        ["ingest", "--no-acknowledge", "--to", TO],
        ["ingest", "--help"],
        ["ingest", "--to"],
        ["--version"],
        ["serve"],
        ["--from", "a@x.example", "ingest", "--to", TO],  # --from belongs to ingest
        ["ingest", "--to", TO, "extra"],
        ["ingest", "--to", "x@y.example>\r\nRCPT TO:<z@y.example"],  # no LMTP injection
        ["ingest", "--from", "a b@x.example", "--to", TO],
        ["ingest", "--from", "j\udce9@x.example", "--to", TO],  # not UTF-8 on the command line
        ["ingest", "--to="],
        ["--config=", "ingest", "--to", TO],
        [],
    ],
)
def test_anything_else_goes_to_the_full_command(argv: list[str]) -> None:
    assert pipe_form(argv, {}) is None


def test_the_socket_comes_from_the_environment_before_the_file(tmp_path: Path) -> None:
    config = tmp_path / "mailgate.toml"
    config.write_text('[lmtp]\nsocket = "/run/mailgate/lmtp.sock"\n')
    assert deliver.configured_socket(str(config), {}) == "/run/mailgate/lmtp.sock"
    env = {"MAILGATE_LMTP__SOCKET": ""}
    assert deliver.configured_socket(str(config), env) == ""  # switched off
    assert deliver.configured_socket(None, {}) == ""  # built-in default: off
    config.write_text("[lmtp\n")  # not TOML: the full command reports it (exit 78)
    assert deliver.configured_socket(str(config), {}) == ""
    assert deliver.configured_socket(str(tmp_path / "missing.toml"), {}) == ""


@pytest.mark.parametrize(
    ("line", "command", "code"),
    [
        ("250 2.0.0 OK queued as 7", "DATA", 0),
        ("451 4.3.0 Temporary failure storing the message, please retry", "DATA", 75),
        ("452 4.3.1 Insufficient system storage, please retry", "DATA", 75),
        ("452 4.5.3 Too many recipients", "RCPT", 75),
        ("550 5.1.1 <x@y.example>: no such helpdesk address", "RCPT", 67),
        ("553 5.1.3 Error: malformed address", "RCPT", 67),
        ("552 5.3.4 Error: message size exceeds fixed maximum message size", "MAIL", 73),
        ("552 5.3.4 Error: Too much mail data", "DATA", 73),
        ("550 5.7.1 Message rejected as spam", "DATA", 77),
        ("554 5.6.0 Empty message", "DATA", 65),
        ("553 5.1.3 Error: malformed address", "MAIL", 65),
        ("500 5.5.2 Line too long (see RFC5321 4.5.3.1.6)", "DATA", 75),
        ("503 5.5.1 Error: need RCPT command", "DATA", 75),
    ],
)
def test_replies_map_to_sysexits(line: str, command: str, code: int) -> None:
    reply = Reply(int(line[:3]), line[4:])
    assert exit_code(reply, command) == code


def test_a_temporary_refusal_wins_over_a_permanent_one() -> None:
    assert deliver.worst([0, 67, 75]) == 75
    assert deliver.worst([0, 67, 73]) == 67
    assert deliver.worst([0, 0]) == 0


def test_data_has_crlf_line_ends_and_stuffed_dots() -> None:
    raw = b"Subject: x\n\n.one\n..two\r\nthree\n."
    assert lmtp_data(raw) == b"Subject: x\r\n\r\n..one\r\n...two\r\nthree\r\n..\r\n.\r\n"
    assert lmtp_data(b"") == b".\r\n"


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "run" / "lmtp.sock")
    os.mkdir(tmp_path / "run")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)  # a daemon that was killed: the file stays, nobody listens
    dead.close()
    sock, made = lmtpsocket.bind(path, 0o660)
    try:
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o660
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        sock.close()
    made.remove()
    assert not os.path.exists(path)


def test_a_live_socket_is_not_taken(tmp_path: Path) -> None:
    path = str(tmp_path / "lmtp.sock")
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(path)
    live.listen()
    try:
        with pytest.raises(OSError) as caught:
            lmtpsocket.bind(path, 0o660)
        assert caught.value.errno == errno.EADDRINUSE
        assert "another process listens" in str(caught.value)
    finally:
        live.close()
    assert os.path.exists(path)


def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "lmtp.sock"
    path.write_text("not a socket")
    with pytest.raises(OSError) as caught:
        lmtpsocket.bind(str(path), 0o660)
    assert caught.value.errno == errno.EEXIST
    assert path.read_text() == "not a socket"


def test_a_replaced_socket_file_is_not_removed(tmp_path: Path) -> None:
    path = str(tmp_path / "lmtp.sock")
    sock, made = lmtpsocket.bind(path, 0o600)
    sock.close()
    os.unlink(path)
    time.sleep(0.05)  # a later change time, as a daemon started later has
    newer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    newer.bind(path)  # another daemon's socket now
    try:
        made.remove()
        assert os.path.exists(path)
    finally:
        newer.close()
