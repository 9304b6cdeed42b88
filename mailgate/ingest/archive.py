"""Batch import of old mail: every message of an mbox file or a Maildir, through ``accept``.

Each message's ``source_ref`` names the file and the message's key in it, so importing
the same mailbox again stores nothing twice.  Messages are committed ``BATCH_SIZE`` at a
time; an import cut short resumes where it stopped when run again.
"""

from __future__ import annotations

import mailbox
import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from mailgate.ingest.accept import Envelope, Incoming, accept_many

BATCH_SIZE = 200


@dataclass(frozen=True, slots=True)
class Imported:
    path: str  # the mailbox, as an absolute path
    found: int
    stored: int
    duplicates: int  # stored by an earlier import


def import_mbox(
    sessions: sessionmaker[Session], path: str, envelope: Envelope, acknowledge: bool
) -> Imported:
    full = os.path.abspath(path)
    box = mailbox.mbox(full, create=False)
    return _import(sessions, box, "mbox", full, envelope, acknowledge)


def import_maildir(
    sessions: sessionmaker[Session], path: str, envelope: Envelope, acknowledge: bool
) -> Imported:
    full = os.path.abspath(path)
    box = mailbox.Maildir(full, factory=None, create=False)
    return _import(sessions, box, "maildir", full, envelope, acknowledge)


def _import(
    sessions: sessionmaker[Session],
    box: mailbox.Mailbox[Any],
    source: str,
    path: str,
    envelope: Envelope,
    acknowledge: bool,
) -> Imported:
    from tqdm import tqdm  # a progress bar on a terminal, silent otherwise

    stored = duplicates = 0
    try:
        keys = list(box.keys())

        def items() -> Iterator[Incoming]:
            for key in keys:
                raw = box.get_bytes(key)
                yield Incoming(raw, envelope, source, f"{source}:{path}:{key}", acknowledge)

        with tqdm(total=len(keys), unit="msg", disable=None, desc="importing") as bar:
            it = items()
            while chunk := list(islice(it, BATCH_SIZE)):
                results = accept_many(sessions, chunk)
                duplicates += sum(r.duplicate for r in results)
                stored += sum(not r.duplicate for r in results)
                bar.update(len(chunk))
    finally:
        box.close()
    return Imported(path, len(keys), stored, duplicates)
