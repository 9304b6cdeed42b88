"""Batch import of the corpus beside what parsing alone costs.

  import     — ``mailgate ingest --mbox corpus.mbox`` then ``mailgate drain`` (both real
               CLI processes, start-up included) into a fresh, migrated SQLite database,
               until every message is processed into tickets and articles;
               msg/s over the whole (ingest + processing);
  parse-only — ``mailparser.parse_from_bytes`` over the same raw messages, one process:
               the floor any pipeline built on mail-parser pays;
  facts      — ``mailgate.pipeline.facts.analyze`` (parse, classify, authenticate without DNS,
               redact, identify, prioritise) over the same messages, one process: for
               reference, what mailgate's own per-message work costs before any SQL.

The import runs with the default settings (two facts worker processes), no DNS, and
no acknowledgements (``--no-acknowledge`` is the batch default).
"""

from __future__ import annotations

import mailbox
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from run import migrate

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Batch:
    messages: int
    import_rate: float  # msg/s, ingest + drain
    ingest_seconds: float
    drain_seconds: float
    parse_rate: float  # msg/s, mail-parser alone
    facts_rate: float  # msg/s, mailgate.pipeline.facts.analyze alone
    tickets: int
    articles: int
    quarantined: int


def read_mbox(path: Path) -> list[bytes]:
    box = mailbox.mbox(str(path), create=False)
    try:
        return [box.get_bytes(key) for key in box.iterkeys()]
    finally:
        box.close()


def parse_only(raws: list[bytes]) -> float:
    import mailparser

    t0 = time.perf_counter()
    for raw in raws:
        mailparser.parse_from_bytes(raw)
    return len(raws) / (time.perf_counter() - t0)


def facts_only(raws: list[bytes]) -> float:
    from mailgate.config import load
    from mailgate.daemon import wiring
    from mailgate.pipeline.batches import facts_config
    from mailgate.pipeline.facts import analyze

    # Default settings; an in-memory database, since nothing here touches one.
    settings = load(None, environ={"MAILGATE_DATABASE__URL": "sqlite:///:memory:"})
    rt = wiring.build(settings, environ={})
    try:
        config = facts_config(rt)
    finally:
        rt.close()
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    for raw in raws:
        analyze(raw, "customer@customer.example", config, wiring.no_dns, now)
    return len(raws) / (time.perf_counter() - t0)


def import_corpus(mbox: Path, workdir: Path) -> tuple[float, float, sqlite3.Row]:
    """Ingest and drain into a fresh SQLite database; (ingest s, drain s, counts)."""
    db = workdir / "batch.db"
    env = {
        **os.environ,
        "MAILGATE_DATABASE__URL": f"sqlite:///{db}",
        "MAILGATE_OUTBOUND__MAILDIR": str(workdir / "sent"),
        "MAILGATE_LOG__LEVEL": "WARNING",
        "MAILGATE_VERIFY__DNS_LOOKUPS": "false",
    }
    mailgate = str(Path(sys.executable).parent / "mailgate")

    def cli(*args: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([mailgate, *args], env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0

    migrate(f"sqlite:///{db}")
    ingest = cli("ingest", "--mbox", str(mbox))
    drain = cli("drain")
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute(
            "SELECT (SELECT count(*) FROM ticket) AS tickets, "
            "(SELECT count(*) FROM article WHERE direction = 'in') AS articles, "
            "(SELECT count(*) FROM inbound_message WHERE status = 'quarantined') AS q, "
            "(SELECT count(*) FROM inbound_message "
            " WHERE status NOT IN ('done', 'quarantined')) AS unsettled"
        ).fetchone()
    if row["unsettled"]:
        raise RuntimeError(f"drain left {row['unsettled']} messages unprocessed")
    return ingest, drain, row


def run(mbox: Path, workdir: Path) -> Batch:
    raws = read_mbox(mbox)
    ingest, drain, counts = import_corpus(mbox, workdir)
    return Batch(
        messages=len(raws),
        import_rate=len(raws) / (ingest + drain),
        ingest_seconds=ingest,
        drain_seconds=drain,
        parse_rate=parse_only(raws),
        facts_rate=facts_only(raws),
        tickets=counts["tickets"],
        articles=counts["articles"],
        quarantined=counts["q"],
    )
