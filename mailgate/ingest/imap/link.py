"""The IMAP connection of one folder's reader: log in, and let go.

``connect`` opens a TLS (or STARTTLS) session bounded by the account's timeout and logs
in with the password the wiring read from ``password_env`` or, for ``password_file``,
the file as it is now (re-read at every connect, so a rotated token is picked up).
``disconnect`` knows that after a broken link nothing useful can be said on it.
"""

from __future__ import annotations

import contextlib
import imaplib
import ssl
from collections.abc import Mapping
from pathlib import Path

from imapclient import IMAPClient, SocketTimeout

from mailgate.config import ImapAccountSettings
from mailgate.errors import TemporaryError

# What a broken connection or a refusing server raises (imapclient's errors derive from
# imaplib's; socket timeouts and TLS failures are OSErrors).
NETWORK_ERRORS = (OSError, imaplib.IMAP4.error)
# What only a broken connection raises: after one of these the protocol state is unknown.
BROKEN_LINK = (OSError, imaplib.IMAP4.abort)


def read_secret(account: ImapAccountSettings, passwords: Mapping[str, str]) -> str:
    """The password or token: from ``passwords`` (read from ``password_env`` at wiring
    time), or the ``password_file`` read now so a rotated one is picked up."""
    if account.password_env:
        value = passwords.get(account.name)
        if value is None:
            raise TemporaryError(f"environment variable {account.password_env} is not set")
        return value
    # One trailing newline is an editor's, not the secret's.
    return Path(account.password_file).read_text(encoding="utf-8").removesuffix("\n")


def connect(account: ImapAccountSettings, passwords: Mapping[str, str]) -> IMAPClient:
    """A logged-in client; every socket operation is bounded by ``account.timeout``."""
    timeout = SocketTimeout(connect=account.timeout, read=account.timeout)
    context = ssl.create_default_context()  # verifies the certificate and the host name
    implicit = account.tls == "implicit"
    client = IMAPClient(
        account.host,
        port=account.effective_port,
        ssl=implicit,
        ssl_context=context if implicit else None,
        timeout=timeout,
    )
    try:
        if account.tls == "starttls":
            client.starttls(context)
        secret = read_secret(account, passwords)
        if account.auth == "xoauth2":
            client.oauth2_login(account.username, secret)
        else:
            client.login(account.username, secret)
        if account.move_to and not client.folder_exists(account.move_to):
            client.create_folder(account.move_to)
    except BaseException:
        with contextlib.suppress(Exception):
            client.shutdown()
        raise
    return client


def disconnect(client: IMAPClient, *, broken: bool = False) -> None:
    """Log out politely, or just close the socket when the link is ``broken``.

    After a timeout or a cut nothing useful can be said on the connection: a LOGOUT
    into a stalled link would only wait out the read timeout a second time before the
    reconnect.
    """
    if not broken:
        try:
            client.logout()
        except Exception:  # noqa: BLE001 -- the connection is often already gone; just drop it
            broken = True
    if broken:
        with contextlib.suppress(Exception):
            client.shutdown()
