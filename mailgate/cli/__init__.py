"""The ``mailgate`` command line: the daemon, ingest from a pipe or a batch, and the
operator's views of tickets (with their delivery events), the quarantine and the outbox.

``root`` holds the click group ``main``, the ``Context`` every command receives and the
exit codes; each other module adds one command group, named as on the command line:

    service     serve, drain, check, db upgrade
    ingest      ingest (MTA pipe, mbox/Maildir import), imap poll-once
    parse       parse FILE (what mailgate sees, no database)
    tickets     tickets list, ticket show, export
    quarantine  quarantine list / show / replay
    outbox      outbox list / retry / drop
    accounts    accounts add / import / list / show
    operators   operators add / list
    webhooks    webhooks list / resend

Importing this package registers every command.  Only ``mailgate.__main__`` imports it.
"""

from __future__ import annotations

# Each module registers its commands on ``main`` when imported.
from mailgate.cli import (
    accounts,
    ingest,
    operators,
    outbox,
    parse,
    quarantine,
    service,
    tickets,
    webhooks,
)
from mailgate.cli.root import EX_CONFIG, EX_DATAERR, EX_TEMPFAIL, accept_config_anywhere, main
from mailgate.cli.tickets import ticket_doc

# Registered last: every command now exists to receive its own --config.
accept_config_anywhere(main)

__all__ = [
    "EX_CONFIG",
    "EX_DATAERR",
    "EX_TEMPFAIL",
    "accounts",
    "ingest",
    "main",
    "operators",
    "outbox",
    "parse",
    "quarantine",
    "service",
    "ticket_doc",
    "tickets",
    "webhooks",
]
