"""The exception tree of mailgate.

::

    MailgateError
    ├── ConfigError        one error listing every problem, raised at start-up
    ├── TemporaryError     retry later (relay 4xx, parse budget exceeded)
    │   ├── DatabaseUnavailable   the store cannot be reached or is locked
    │   └── StorageFull           no room to write: the database's disk, the Maildir
    └── PermanentError     quarantine with a reason code (undecodable or hostile input)

Business outcomes are ``Verdict`` values (see ``policy``), never exceptions.  Each
adapter maps these errors to its protocol in one place: SMTP/LMTP status constants in
``ingest.smtp``, sysexits in ``cli``, the outbox's retry schedule in ``replies.outbox``.
"""

from __future__ import annotations

import errno
import sqlite3


class MailgateError(Exception):
    """Base class of every error mailgate raises on purpose."""


class ConfigError(MailgateError):
    """The configuration is unusable; ``problems`` lists every reason at once."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        joined = "\n  - ".join(self.problems)
        super().__init__(f"invalid configuration:\n  - {joined}")


class TemporaryError(MailgateError):
    """Something outside the message failed; the same work may succeed later."""


class DatabaseUnavailable(TemporaryError):
    """The database cannot be reached, is locked, or lost the connection.

    Not the message's fault: work that hits it is released untouched, not counted as
    a failed attempt.
    """


class StorageFull(TemporaryError):
    """A write failed for lack of space (disk full, quota spent).

    Distinct from ``DatabaseUnavailable`` so the listeners can say what RFC 3463 has a
    code for (452 4.3.1, "mail system full"); otherwise handled the same: nothing is
    lost or quarantined, the work is retried once space is back.  SQLite reports it as
    ``SQLITE_FULL``, PostgreSQL as SQLSTATE 53100, the OS as ENOSPC or EDQUOT.
    """


# SQLSTATE 53100 disk_full (PostgreSQL, "Insufficient Resources" class).
_PG_DISK_FULL = "53100"
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def out_of_space(err: BaseException | None) -> bool:
    """Whether ``err`` (a DB-API or OS error) says the storage is full."""
    if isinstance(err, sqlite3.Error):
        code = getattr(err, "sqlite_errorcode", None)  # may be an extended code
        return code is not None and code & 0xFF == sqlite3.SQLITE_FULL
    if isinstance(err, OSError):
        return err.errno in _NO_SPACE
    return getattr(err, "sqlstate", None) == _PG_DISK_FULL


class PermanentError(MailgateError):
    """The message itself cannot be handled; quarantine it with ``reason``.

    ``reason`` is a short machine-readable code (``header-too-large``,
    ``mime-too-deep`` …) shown by ``mailgate quarantine list``.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)

    def __reduce__(self) -> tuple[type[PermanentError], tuple[str, str]]:
        # Raised in a facts worker process and pickled back: keep reason and detail.
        return (type(self), (self.reason, self.detail))
