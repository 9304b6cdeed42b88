"""The exception tree of mailgate.

::

    MailgateError
    ├── ConfigError        one error listing every problem, raised at start-up
    ├── TemporaryError     retry later (relay 4xx, parse budget exceeded)
│   └── DatabaseUnavailable   the store cannot be reached or is locked
    └── PermanentError     quarantine with a reason code (undecodable or hostile input)

Business outcomes are ``Verdict`` values (see ``policy``), never exceptions.  Each
adapter maps these errors to its protocol in one place: SMTP/LMTP status constants in
``ingest.smtp``, sysexits in ``cli``, the outbox's retry schedule in ``replies.outbox``.
"""

from __future__ import annotations


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
