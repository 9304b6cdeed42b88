"""IMAP ingest: read helpdesk mailboxes that live on someone else's IMAP server.

One thread per configured (account, folder) keeps a connection, waits in IDLE (or polls
when the server or the config says no IDLE) and runs *passes*.  A pass selects the
folder, lists UIDs, and for each batch:

1. asks the store which of those UIDs it already holds (by ``source_ref``
   ``imap:<account>:<folder>:<uidvalidity>:<uid>``, unique in ``inbound_message``);
2. fetches the others with ``BODY.PEEK[]`` (which leaves ``\\Seen`` alone), after an
   ``RFC822.SIZE`` look that keeps over-size messages out;
3. drops any whose exact bytes are already stored (same sha256 and Message-ID) — this is
   what stops a UIDVALIDITY change from importing the whole folder a second time;
4. stores the rest through ``accept_many`` (one commit), wakes the pipeline, and only
   then flags, moves or deletes the messages the store now holds;
5. advances the cursor (``imap_cursor``), which saves work but decides nothing.

Selection is by UID, never by ``\\Seen``: a person reading the mailbox in their own
client hides nothing from mailgate.  Incremental passes look above the cursor; a *full*
pass (on every connect and every ``reconcile_interval``) lists every UID in the folder,
so a lost IDLE notification, a flag that never reached the server or a message skipped
earlier is picked up again.

Poison.  ``accept`` stores raw bytes and parsing happens later, so a message can only be
bad here in two ways: it is larger than ``max_message_size``, or the server cannot hand
it over (Dovecot, for one, drops the whole connection when a message file is
unreadable).  A batch whose FETCH fails is re-fetched one message at a time; a message
whose own FETCH fails twice, or that is over-size, is *skipped*: left in the folder,
unflagged, logged at ERROR and counted, and the pass goes on.  Full passes try skipped
messages again, so a fixed server or a raised limit brings them in.

Leases.  On PostgreSQL a folder is read by one process at a time: its thread holds
``pg_try_advisory_lock`` on a dedicated connection, and the lock goes with that
connection when the process dies, so another process takes over.  On SQLite a single
mailgate process is assumed.  The lock saves duplicate work only; correctness rests on
the unique ``source_ref`` and on acting on a message only after the store holds it.

The parts: ``link`` (connect, log in, disconnect), ``lease`` (the folder's advisory
lock), ``cursors`` (the ``imap_cursor`` row), ``sync`` (one pass over a folder) and
``poller`` (the threads, IDLE, back-off, ``poll_once``).  They all log as
``mailgate.ingest.imap``.
"""

from __future__ import annotations

from mailgate.ingest.imap.cursors import Cursor
from mailgate.ingest.imap.lease import FolderLease, LeaseLost
from mailgate.ingest.imap.link import connect, disconnect, read_secret
from mailgate.ingest.imap.poller import FolderPoller, ImapService, PollResult, poll_once
from mailgate.ingest.imap.sync import FolderStats, FolderSync, Wake

__all__ = [
    "Cursor",
    "FolderLease",
    "FolderPoller",
    "FolderStats",
    "FolderSync",
    "ImapService",
    "LeaseLost",
    "PollResult",
    "Wake",
    "connect",
    "disconnect",
    "poll_once",
    "read_secret",
]
