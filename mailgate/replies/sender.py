"""Transports that hand a rendered message to the world: an SMTP relay or a Maildir.

A transport only moves bytes.  It raises ``TemporaryError`` for anything worth trying
again (connection refused, timeouts, 4xx, ``StorageFull`` for a full Maildir disk) and
``PermanentError`` for a 5xx refusal;
``replies.outbox`` turns those into its retry schedule.
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from mailgate.errors import PermanentError, StorageFull, TemporaryError, out_of_space


@dataclass(slots=True)
class RelayHealth:
    """What the outbox learned about reaching the relay at all (not about a message).

    ``down_since`` is set when a delivery session could not even be opened and cleared
    by the next session that opens; ``last_try`` is when the last session was tried.
    """

    down_since: datetime | None = None
    last_try: datetime | None = None


class Connection(Protocol):
    def send(self, mail_from: str, rcpt_to: list[str], raw: bytes, key: str) -> None:
        """Deliver one message; ``key`` is stable across retries of the same message."""


class Transport(Protocol):
    def connect(self) -> AbstractContextManager[Connection]:
        """Open a delivery session used for a batch of messages."""


class MaildirTransport:
    """Writes each message into ``<dir>/new`` the Maildir way (tmp, fsync, rename).

    The file name derives from the outbox key, so a retry after a crash between
    delivery and bookkeeping rewrites the same file instead of adding a copy.  A write
    that fails (a full disk) removes its partial file from ``tmp``: it would only take
    the space the retry needs.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.root = Path(directory)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        try:
            for sub in ("tmp", "new", "cur"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _write_failed(exc) from exc
        yield self

    def send(self, mail_from: str, rcpt_to: list[str], raw: bytes, key: str) -> None:
        name = f"{key}.{socket.gethostname()}"
        tmp = self.root / "tmp" / name
        try:
            with open(tmp, "wb") as fh:
                fh.write(_maildir_header(mail_from, rcpt_to) + raw)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.root / "new" / name)
            dir_fd = os.open(self.root / "new", os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise _write_failed(exc) from exc


def _write_failed(exc: OSError) -> TemporaryError:
    if out_of_space(exc):
        return StorageFull(f"maildir full: {exc}")
    return TemporaryError(f"maildir write failed: {exc}")


def _maildir_header(mail_from: str, rcpt_to: list[str]) -> bytes:
    # What an MDA records: the envelope, so a reader can see whom it was for.
    lines = [f"Return-Path: <{mail_from}>"] + [f"Delivered-To: {r}" for r in rcpt_to]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


class SmtpRelayTransport:
    """Sends through the relay named in ``[outbound]``.

    ``starttls`` and ``implicit`` verify the relay's certificate and host name (the
    stdlib does not unless given a context: we always pass a default one).  A relay
    without STARTTLS is an error, never a silent fall-back to plain text.  ``insecure``
    speaks plain SMTP; the config allows it only for a loopback relay.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: str = "starttls",
        timeout: float = 30,
        username: str = "",
        password: str = "",
        local_hostname: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.timeout = timeout
        self.username = username
        self.password = password  # read from outbound.password_env at wiring time
        self.local_hostname = local_hostname
        self._context: ssl.SSLContext | None = None

    def _tls_context(self) -> ssl.SSLContext:
        # Built once: create_default_context reads the whole system CA bundle, which
        # cost more than the rest of a connection when done for every batch.
        if self._context is None:
            self._context = ssl.create_default_context()
        return self._context

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        context = self._tls_context() if self.tls in ("starttls", "implicit") else None
        client: smtplib.SMTP | None = None
        try:
            if self.tls == "implicit":
                client = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    local_hostname=self.local_hostname,
                    timeout=self.timeout,
                    context=context,
                )
            else:
                client = smtplib.SMTP(
                    self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
                )
                if self.tls == "starttls":
                    client.starttls(context=context)
            if self.username:
                client.login(self.username, self.password)
        except (OSError, smtplib.SMTPException) as exc:
            if client is not None:
                client.close()  # a refused STARTTLS or login must not leak the socket
            # Even a 5xx here (greeting, AUTH) says nothing about the messages: it is
            # our relay or our credentials, which an operator fixes; the mail waits.
            raise TemporaryError(f"relay {self.host}:{self.port} unreachable: {exc}") from exc
        try:
            yield _SmtpConnection(client)
        finally:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()


class _SmtpConnection:
    def __init__(self, client: smtplib.SMTP) -> None:
        self.client = client

    def send(self, mail_from: str, rcpt_to: list[str], raw: bytes, key: str) -> None:
        try:
            # Outbox rows carry one recipient each, so "some refused" cannot happen:
            # sendmail raises when every recipient is refused.
            self.client.sendmail(mail_from, rcpt_to, raw)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            text = "; ".join(f"{r}: {c} {m!r}" for r, (c, m) in exc.recipients.items())
            if all(400 <= c < 500 for c in codes):
                raise TemporaryError(f"relay refused recipients: {text}") from exc
            raise PermanentError("relay-rejected", text) from exc
        except smtplib.SMTPResponseException as exc:
            raise _classify_reply(exc.smtp_code, exc.smtp_error) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryError(f"relay connection failed: {exc}") from exc


def _classify_reply(code: int, message: bytes | str) -> TemporaryError | PermanentError:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    if 500 <= code < 600:
        return PermanentError("relay-rejected", f"{code} {text}")
    return TemporaryError(f"relay answered {code} {text}")
