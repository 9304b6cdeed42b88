"""The stdlib floor of a pipe delivery (bench/pipe.py): one process per message.

Reads the message on stdin, parses it with the standard library's ``email`` package
(headers and the text body), inserts it into SQLite and commits — WAL with
``synchronous=FULL``, as durable as mailgate's own commit.  No framework, no daemon:
what any pipe command written in Python pays at least.

Usage: python bench/pipe_floor.py DATABASE < message.eml
"""

from __future__ import annotations

import sqlite3
import sys
from email import message_from_bytes, policy


def main() -> None:
    raw = sys.stdin.buffer.read()
    message = message_from_bytes(raw, policy=policy.default)
    body = message.get_body(("plain", "html"))  # type: ignore[attr-defined]
    text = body.get_content() if body is not None else ""
    conn = sqlite3.connect(sys.argv[1], timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    with conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS message (id INTEGER PRIMARY KEY, sender TEXT, "
            "subject TEXT, message_id TEXT, body TEXT, raw BLOB)"
        )
        conn.execute(
            "INSERT INTO message (sender, subject, message_id, body, raw) VALUES (?, ?, ?, ?, ?)",
            (
                str(message.get("from", "")),
                str(message.get("subject", "")),
                str(message.get("message-id", "")),
                text,
                raw,
            ),
        )
    conn.close()


if __name__ == "__main__":
    main()
