"""The pipe's hot path without a daemon: the command line it takes, how replies become
exit codes, the DATA it sends, and the socket file the daemon makes for it."""

from __future__ import annotations

import errno
import io
import os
import socket
import stat
import threading
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
    data = lmtp_data(deliver.with_crlf(raw))
    assert data == b"Subject: x\r\n\r\n..one\r\n...two\r\nthree\r\n..\r\n.\r\n"
    assert lmtp_data(deliver.with_crlf(b"")) == b".\r\n"


def test_a_line_longer_than_lmtp_carries_is_found() -> None:
    fits = b"a\r\n" + b"x" * 998 + b"\r\nb\r\n"
    assert not deliver.has_long_line(fits)
    assert deliver.has_long_line(fits.replace(b"x", b"xx", 1))
    assert deliver.has_long_line(b"y" * 999 + b"\r\n")  # the first line, or the last


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


class FakeDaemon:
    """A scripted LMTP server on a Unix socket, in a thread: one session, then done.

    ``replies`` answers commands by their first word; ``after_data`` is the list of
    replies to the final dot (None: close the connection instead; ["hang up"]: stop
    reading as DATA begins, so the message cannot be sent)."""

    def __init__(
        self,
        path: Path,
        greeting: str | None = "220 fake LMTP",
        replies: dict[str, str] | None = None,
        after_data: list[str] | None = None,
    ) -> None:
        self.path = str(path)
        self.greeting = greeting
        self.replies = {"LHLO": "250-fake\r\n250-SIZE 1000\r\n250 8BITMIME", **(replies or {})}
        self.after_data = after_data
        self.commands: list[str] = []
        self.data = b""
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.server.accept()
        with conn, conn.makefile("rb") as lines:
            if self.greeting is None:
                lines.readline()  # silent: wait for the client to give up
                return
            conn.sendall(self.greeting.encode() + b"\r\n")
            for line in lines:
                command = line.decode().strip()
                self.commands.append(command)
                verb = command.split(" ", 1)[0].split(":", 1)[0].upper()
                if verb == "DATA" and self.after_data == ["hang up"]:
                    conn.shutdown(socket.SHUT_RD)  # the message cannot arrive
                    conn.sendall(b"354 go ahead\r\n")
                    return
                if verb == "DATA" and "DATA" not in self.replies:
                    conn.sendall(b"354 go ahead\r\n")
                    while (chunk := lines.readline()) != b".\r\n":
                        self.data += chunk
                    if self.after_data is None:
                        return
                    conn.sendall("".join(r + "\r\n" for r in self.after_data).encode())
                    continue
                conn.sendall(self.replies.get(verb, "250 2.0.0 OK").encode() + b"\r\n")
                if verb == "QUIT" or self.replies.get(verb, "").startswith("421"):
                    return

    def close(self) -> None:
        self.thread.join(5)
        self.server.close()


def hand_over(path: Path, *to: str, raw: bytes = b"Subject: x\n\nbody\n") -> object:
    argv = ["ingest", "--from", "a@x.example"] + [f"--to={r}" for r in to]
    return deliver.main(argv, io.BytesIO(raw), {"MAILGATE_LMTP__SOCKET": str(path)})


def test_a_stopping_daemon_leaves_the_message_to_the_direct_path(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", greeting="421 4.3.2 mailgate is shutting down")
    outcome = hand_over(tmp_path / "s", TO)
    fake.close()
    assert isinstance(outcome, deliver.Direct) and outcome.raw is None  # stdin untouched


def test_no_greeting_in_time_is_no_daemon(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", greeting=None)
    with pytest.raises(TimeoutError):
        deliver.Lmtp.connect(str(tmp_path / "s"), timeout=0.2)
    fake.close()


def test_421_before_data_hands_the_read_message_to_the_direct_path(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", replies={"MAIL": "421 4.3.2 shutting down"})
    outcome = hand_over(tmp_path / "s", TO)
    fake.close()
    assert isinstance(outcome, deliver.Direct) and outcome.raw == b"Subject: x\n\nbody\n"


def test_a_temporary_rcpt_refusal_is_75_and_no_data_is_sent(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", replies={"RCPT": "451 4.3.0 try later"})
    assert hand_over(tmp_path / "s", TO) == 75
    fake.close()
    assert not any(c.upper() == "DATA" for c in fake.commands)


def test_size_and_8bit_are_declared_and_the_data_arrives_stuffed(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", after_data=["250 2.0.0 OK queued as 9"])
    raw = "Subject: ż\n\n.hidden dot\n".encode()
    assert hand_over(tmp_path / "s", TO, raw=raw) == 0
    fake.close()
    assert f"MAIL FROM:<a@x.example> SIZE={len(raw) + 3} BODY=8BITMIME" in (fake.commands)
    assert fake.data == "Subject: ż\r\n\r\n..hidden dot\r\n".encode()


def test_a_connection_lost_before_the_final_dot_leaves_it_to_the_direct_path(
    tmp_path: Path,
) -> None:
    fake = FakeDaemon(tmp_path / "s", after_data=["hang up"])
    outcome = hand_over(tmp_path / "s", TO)
    fake.close()
    assert isinstance(outcome, deliver.Direct) and outcome.raw == b"Subject: x\n\nbody\n"


def test_a_connection_lost_after_the_final_dot_is_75(tmp_path: Path) -> None:
    fake = FakeDaemon(tmp_path / "s", after_data=None)
    assert hand_over(tmp_path / "s", TO) == 75  # it may be stored: retry, never 0
    fake.close()


def test_differing_replies_after_data_never_exit_0(tmp_path: Path) -> None:
    replies = ["250 2.0.0 OK queued as 9", "451 4.3.0 try later"]
    fake = FakeDaemon(tmp_path / "s", after_data=replies)
    assert hand_over(tmp_path / "s", TO, "billing@helpdesk.example") == 75
    fake.close()
