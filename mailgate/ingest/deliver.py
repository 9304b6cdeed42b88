"""The pipe's hot path: ``mailgate ingest`` hands the message to the running daemon.

An MTA's pipe transport (Postfix pipe(8), Exim's pipe) starts one ``mailgate ingest
--from S --to R`` per message.  Importing the whole of mailgate to store one message
costs a second or more of CPU, so — as Cyrus ``deliver`` and Dovecot's LDA do — the
command speaks LMTP (RFC 2033) to the daemon's Unix socket (``[lmtp] socket``,
``ingest.lmtpsocket``), where the same listener as for TCP LMTP stores the message and
answers 250 only after the commit.  Only the standard library is imported on this
path (``tests/unit/test_walls.py`` holds that wall): not even ``mailgate.config``,
so the config file is read here with ``tomllib``, for the one key it needs, honouring
``--config``, ``MAILGATE_CONFIG`` and ``MAILGATE_LMTP__SOCKET`` as ``config.load``
does.  The rest of the file is the daemon's to check.

``__main__`` calls ``main``.  It answers ``None`` when the command line is not the plain
pipe form (``--mbox``, ``--maildir``, ``--no-acknowledge``, ``--help``, no ``--to`` …:
the full command handles those), an exit code when the daemon decided, or a
``Direct`` when the message must be stored by this process the old way
(``ingest.pipe``): no socket is configured, nobody answers on it (no file, connection
refused, no greeting within ``CONNECT_TIMEOUT``, a 421 greeting from a daemon that is
stopping), the connection broke before the end of the message was sent, or the
message cannot travel through LMTP unchanged (a line over 998 bytes, which the
listener refuses).  Nothing is stored twice by that: until the final dot is sent the
daemon has nothing to store.  After it, a lost connection is 75 — the MTA retries;
a duplicate at worst, never a loss, and never exit 0 before the daemon's commit.

Replies become sysexits(3) codes in one place, ``exit_code``: 250 → 0; any 4xx → 75
(EX_TEMPFAIL); 550/551/553 to RCPT → 67 (EX_NOUSER); 552 or x.3.4 (too big) → 73
(EX_CANTCREAT); x.7.x (rspamd's reject) → 77 (EX_NOPERM); a protocol error (500–504,
x.5.x: our bug, not the message's) → 75; any other 5xx (554 empty message, a refused
sender) → 65 (EX_DATAERR).  Every refusal is printed on standard error, where the MTA
takes the text of a bounce from.

Several recipients: DATA is sent only when every RCPT got 250, so a message is stored
for all of them or for none; otherwise the exit code is 75 if any refusal was
temporary, else the first permanent one's.  After DATA the daemon answers each
recipient alike (one stored message); were the answers to differ, a temporary one
wins, then a permanent one: the MTA retries or bounces rather than losing a recipient.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import sys
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without loading typing (2 ms of this path)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import BinaryIO

EX_OK = 0
EX_DATAERR = 65
EX_NOUSER = 67
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_NOPERM = 77

CONNECT_TIMEOUT = 10.0  # connecting and the greeting; then the message is stored directly
COMMAND_TIMEOUT = 60.0  # the reply to each of LHLO, MAIL, RCPT, DATA, QUIT
DATA_TIMEOUT = 600.0  # sending the message, then each reply to it (RFC 5321 §4.5.3.2.6)

LHLO_NAME = "localhost"
# The listener's line limit (aiosmtpd: 1001 bytes with CRLF), less the stuffed dot.
MAX_LINE = 998
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
_QUEUED_AS = re.compile(r"queued as (\d+)")
# What no envelope address may contain on a command line (angle brackets, line breaks).
_UNSAFE = re.compile(r"[<>\r\n\x00\s]")


# Plain classes, not dataclasses: the dataclasses module and its decorator would cost
# this path about a tenth of its time.
class PipeArgs:
    """The plain pipe form of the command line."""

    __slots__ = ("config", "mail_from", "rcpt_to")

    def __init__(self, config: str | None, mail_from: str, rcpt_to: tuple[str, ...]) -> None:
        self.config = config
        self.mail_from = mail_from
        self.rcpt_to = rcpt_to


class Direct:
    """Store the message in this process (``ingest.pipe``): no daemon to hand it to.

    ``raw`` is the message when standard input has been read already, else None."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes | None) -> None:
        self.raw = raw

    def as_stdin(self) -> io.TextIOWrapper | None:
        """What the direct path can read the message from (None: the real stdin)."""
        return None if self.raw is None else io.TextIOWrapper(io.BytesIO(self.raw))


class Reply:
    __slots__ = ("code", "text")

    def __init__(self, code: int, text: str) -> None:
        self.code = code
        self.text = text  # the last line, without its code: "2.0.0 OK queued as 17"

    @property
    def enhanced(self) -> str:
        first = self.text.split(" ", 1)[0]
        return first if _ENHANCED.match(first) else ""

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


class _NoDaemon(Exception):
    """Nothing has been handed over: the message may be stored directly."""


def main(
    argv: list[str], stdin: BinaryIO | None = None, environ: Mapping[str, str] | None = None
) -> int | Direct | None:
    """Hand the message on ``stdin`` to the daemon: an exit code, ``Direct``, or None."""
    environ = os.environ if environ is None else environ
    args = pipe_form(argv, environ)
    if args is None:
        return None
    path = configured_socket(args.config, environ)
    if not path:
        return Direct(None)
    try:
        lmtp = Lmtp.connect(path)
    except (OSError, _NoDaemon) as exc:
        _say(f"mailgate: no daemon answers on {path} ({_why(exc)}): storing directly")
        return Direct(None)
    raw = (stdin or sys.stdin.buffer).read()
    try:
        return lmtp.deliver(args, raw)
    except _NoDaemon as exc:
        _say(f"mailgate: the daemon on {path} did not take the message ({exc}): storing directly")
        return Direct(raw)
    except Exception as exc:  # noqa: BLE001 -- an MTA must retry, not bounce, on our bugs
        _say(f"mailgate: unexpected failure, try again later: {exc!r}")
        return EX_TEMPFAIL
    finally:
        lmtp.close()


def pipe_form(argv: list[str], environ: Mapping[str, str]) -> PipeArgs | None:
    """The arguments when ``argv`` is ``[--config C] ingest --from S --to R…``, else None.

    Anything else — another command, an option this path does not know, an address
    that cannot be written in an LMTP command verbatim — goes to the full command."""
    config: str | None = None
    mail_from = ""
    rcpt_to: list[str] = []
    ingest = False
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "ingest" and not ingest:
            ingest = True
            continue
        name, eq, value = arg.partition("=")
        if ingest and arg == "--acknowledge":
            continue
        if name not in ("--config", "--from", "--to") or (name != "--config" and not ingest):
            return None
        if not eq:
            if not rest:
                return None
            value = rest.pop(0)
        if name == "--config":
            config = value
        elif name == "--from":
            mail_from = value
        else:
            rcpt_to.append(value.lower())  # as the full command does
    config = config if config is not None else environ.get("MAILGATE_CONFIG")
    addresses = [mail_from, *rcpt_to]
    if not ingest or not rcpt_to or not all(rcpt_to) or config == "":
        return None
    if any(_UNSAFE.search(a) or not _encodable(a) for a in addresses):
        return None
    return PipeArgs(config, mail_from, tuple(rcpt_to))


def _encodable(address: str) -> bool:
    """False for an argument that was not UTF-8 (Python keeps its bytes as surrogates)."""
    try:
        address.encode()
    except UnicodeEncodeError:
        return False
    return True


def configured_socket(config: str | None, environ: Mapping[str, str]) -> str:
    """``[lmtp] socket`` from the environment or the config file ("" when unset).

    A file that cannot be read or parsed gives "": the full command then reports it."""
    for key, value in environ.items():
        if key.startswith("MAILGATE_") and key[len("MAILGATE_") :].lower() == "lmtp__socket":
            return value
    if config is None:
        return ""
    import tomllib  # here: not needed when the environment names the socket

    try:
        with open(config, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return ""
    section = data.get("lmtp")
    value = section.get("socket", "") if isinstance(section, dict) else ""
    return value if isinstance(value, str) else ""


def exit_code(reply: Reply, command: str) -> int:
    """The sysexits code for the daemon's ``reply`` to ``command`` (MAIL, RCPT, DATA)."""
    code, enhanced = reply.code, reply.enhanced
    kind = enhanced.split(".")[1] if enhanced else ""
    if code < 400:
        return EX_OK
    if code < 500:
        return EX_TEMPFAIL
    if code == 552 or enhanced == "5.3.4":
        return EX_CANTCREAT
    if 500 <= code <= 504 or kind == "5":
        return EX_TEMPFAIL  # the client and the listener disagree: our bug, retry
    if command == "RCPT" and (code in (550, 551, 553) or kind == "1"):
        return EX_NOUSER
    if kind == "7":
        return EX_NOPERM
    return EX_DATAERR


def worst(codes: list[int]) -> int:
    """One exit code for several replies: temporary beats permanent beats success."""
    if EX_TEMPFAIL in codes:
        return EX_TEMPFAIL
    return next((c for c in codes if c != EX_OK), EX_OK)


def with_crlf(raw: bytes) -> bytes:
    """``raw`` with CRLF line ends, ending with one: the message as LMTP carries it."""
    text = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return text + b"\r\n" if text and not text.endswith(b"\r\n") else text


def lmtp_data(text: bytes) -> bytes:
    """``text`` (``with_crlf``) as LMTP DATA: dot-stuffed, ending with the final dot."""
    # bytes.replace, not a regular expression: a fifth of the time on a 25 MB message.
    stuffed = text.replace(b"\n.", b"\n..")
    return (b"." if stuffed.startswith(b".") else b"") + stuffed + b".\r\n"


def has_long_line(text: bytes, limit: int = MAX_LINE) -> bool:
    """Whether a line of ``text`` (without its CRLF) is longer than ``limit`` bytes."""
    # A scan from newline to newline: linear, where a regular expression searching for
    # a long run of non-newlines retries from every byte (2 s on 25 MB).
    start, find = 0, text.find
    while (end := find(b"\n", start)) >= 0:
        if end - 1 - start > limit:
            return True
        start = end + 1
    return len(text) - start > limit


class Lmtp:
    """One LMTP session with the daemon over its Unix socket; every step has a timeout."""

    def __init__(self, sock: socket.socket, path: str) -> None:
        self.sock = sock
        self.path = path
        self.buffer = b""
        self.extensions: set[str] = set()

    @classmethod
    def connect(cls, path: str, timeout: float = CONNECT_TIMEOUT) -> Lmtp:
        """Connect and read the greeting; ``_NoDaemon`` unless a daemon says 220."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        session = cls(sock, path)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
            greeting = session.reply(timeout)
        except BaseException:
            sock.close()
            raise
        if greeting.code != 220:
            sock.close()
            raise _NoDaemon(f"greeting {greeting}")
        return session

    def close(self) -> None:
        self.sock.close()

    def deliver(self, args: PipeArgs, raw: bytes) -> int:
        """The session after the greeting; raises ``_NoDaemon`` while nothing is handed over."""
        text = with_crlf(raw)
        if has_long_line(text):
            self._quit()
            raise _NoDaemon("a line is longer than LMTP carries")
        data = lmtp_data(text)
        try:
            hello = self.command(f"LHLO {LHLO_NAME}", COMMAND_TIMEOUT, lines=True)
            if hello.code != 250:
                raise _NoDaemon(f"LHLO answered {hello}")
            # SIZE counts the message with CRLF line ends, without stuffing (RFC 1870).
            refused = self._mail_from(args, len(text), raw)
            if refused is None:
                refused = self._recipients(args.rcpt_to)
            if refused is not None:
                self._quit()
                return refused
            go = self.command("DATA", COMMAND_TIMEOUT)
            if go.code != 354:
                return self._refused(go, "DATA", "")
        except OSError as exc:
            raise _NoDaemon(_why(exc)) from exc
        try:
            self.sock.settimeout(DATA_TIMEOUT)
            self.sock.sendall(data)
        except OSError as exc:
            # sendall failed before its last byte, so the final dot never arrived and
            # the daemon has nothing to store: the direct path may store it.
            raise _NoDaemon(f"sending the message: {_why(exc)}") from exc
        return self._outcome(args.rcpt_to)

    def _mail_from(self, args: PipeArgs, size: int, raw: bytes) -> int | None:
        params = [f"SIZE={size}"] if "SIZE" in self.extensions else []
        if "8BITMIME" in self.extensions and not raw.isascii():
            params.append("BODY=8BITMIME")
        if not all(a.isascii() for a in (args.mail_from, *args.rcpt_to)):
            if "SMTPUTF8" not in self.extensions:
                raise _NoDaemon("no SMTPUTF8 for a non-ASCII address")
            params.append("SMTPUTF8")
        reply = self.command(" ".join([f"MAIL FROM:<{args.mail_from}>", *params]), COMMAND_TIMEOUT)
        if reply.code == 250:
            return None
        return self._refused(reply, "MAIL", "")

    def _recipients(self, rcpt_to: tuple[str, ...]) -> int | None:
        codes = []
        for address in rcpt_to:
            reply = self.command(f"RCPT TO:<{address}>", COMMAND_TIMEOUT)
            codes.append(EX_OK if reply.code == 250 else self._refused(reply, "RCPT", address))
        code = worst(codes)
        return None if code == EX_OK else code

    def _refused(self, reply: Reply, command: str, address: str) -> int:
        if reply.code == 421:
            raise _NoDaemon(str(reply))  # stopping: nothing was handed over
        who = f" <{address}>" if address and address not in reply.text else ""
        _say(f"mailgate:{who} {reply}")
        return exit_code(reply, command)

    def _outcome(self, rcpt_to: tuple[str, ...]) -> int:
        """One reply per recipient after the final dot (RFC 2033 §4.2)."""
        try:
            replies = [self.reply(DATA_TIMEOUT) for _ in rcpt_to]
        except OSError as exc:
            _say(
                f"mailgate: no answer from the daemon on {self.path}, try again later: {_why(exc)}"
            )
            return EX_TEMPFAIL
        code = worst([exit_code(r, "DATA") for r in replies])
        for address, reply in zip(rcpt_to, replies, strict=True):
            if reply.code != 250:
                _say(f"mailgate: <{address}> {reply}")
        if code == EX_OK:
            self._quit()
            queued = _QUEUED_AS.search(replies[0].text)
            _say(
                f"stored as inbound message {queued.group(1) if queued else '?'} (via {self.path})"
            )
        return code

    def _quit(self) -> None:
        # The message's fate is decided: a lost goodbye changes nothing.
        with contextlib.suppress(OSError):
            self.command("QUIT", COMMAND_TIMEOUT)

    def command(self, line: str, timeout: float, *, lines: bool = False) -> Reply:
        self.sock.settimeout(timeout)
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply(timeout, lines=lines)

    def reply(self, timeout: float, *, lines: bool = False) -> Reply:
        """One (possibly multi-line) reply; with ``lines`` the LHLO extensions are kept."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._line(deadline)
            code, sep, text = line[:3], line[3:4], line[4:]
            if not code.isdigit() or sep not in ("-", " ", ""):
                raise ConnectionError(f"not an LMTP reply: {line[:80]!r}")
            if lines and code == "250":
                self.extensions.add(text.split(" ", 1)[0].upper())
            if sep != "-":
                return Reply(int(code), text)

    def _line(self, deadline: float) -> str:
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out")
            if len(self.buffer) > 65536:
                raise ConnectionError("a reply line without end")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r").decode("utf-8", "replace")


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
