"""Batch import of the corpus beside what parsing alone costs.

  import     — ``mailgate ingest --mbox corpus.mbox`` then ``mailgate drain`` (both real
               CLI processes, start-up included) into a fresh, migrated SQLite database,
               until every message is processed into tickets and articles;
               msg/s over the whole (ingest + processing);
  parse-only — ``mailparser.parse_from_bytes`` over the same raw messages, one process:
               the floor any pipeline built on mail-parser pays;
  facts      — ``mailgate.pipeline.facts.analyze`` (parse, classify, authenticate without DNS,
               redact, identify, prioritise) over the same messages, one process: for
               reference, what mailgate's own per-message work costs before any SQL;
  floor      — the stdlib floor, one process: read the same mbox with ``mailbox``, parse
               each message with the stdlib ``email`` package (``policy.default``: From,
               subject, Message-ID and the text body), INSERT it with its raw bytes into
               a SQLite table (WAL, ``synchronous=FULL``, as mailgate's) and COMMIT every
               ``FLOOR_COMMIT`` messages — the size of one ``drain`` batch, so both sides
               pay the same number of fsyncs per message.  The import's target is
               ≥ 0.8 × this rate.

CPU ms per message: the floor's own process time; for the import, user + sys of the
``ingest`` and ``drain`` processes and every process under them (the forkserver and
the facts workers included: this process becomes their subreaper, so they are reaped
here and counted in ``RUSAGE_CHILDREN``).

The import runs with the default settings (two facts worker processes), no DNS, and
no acknowledgements (``--no-acknowledge`` is the batch default).
"""

from __future__ import annotations

import ctypes
import email
import email.policy
import mailbox
import os
import resource
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from run import migrate

ROOT = Path(__file__).resolve().parents[1]
FLOOR_COMMIT = 50  # messages per COMMIT in the floor: one ``drain`` batch
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


@dataclass
class Batch:
    messages: int
    import_rate: float  # msg/s, ingest + drain
    ingest_seconds: float
    drain_seconds: float
    parse_rate: float  # msg/s, mail-parser alone
    facts_rate: float  # msg/s, mailgate.pipeline.facts.analyze alone
    floor_rate: float  # msg/s, stdlib parse + SQLite insert, one process
    floor_cpu_ms: float  # CPU ms per message of the floor
    import_cpu_ms: float  # CPU ms per message of ingest + drain and their children
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
    from mailgate.pipeline.claims import facts_config
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


def stdlib_floor(mbox: Path, workdir: Path) -> tuple[float, float]:
    """(msg/s, CPU ms per message) of the floor: read, parse, insert, commit."""
    conn = sqlite3.connect(workdir / "floor.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE message (id INTEGER PRIMARY KEY, message_id TEXT, sender TEXT, "
        "subject TEXT, body TEXT, raw BLOB NOT NULL)"
    )
    t0, cpu0 = time.perf_counter(), time.process_time()
    n = 0
    for raw in read_mbox(mbox):
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        part = msg.get_body(("plain", "html"))
        try:
            body = part.get_content() if part is not None else ""
        except (LookupError, ValueError):  # an unknown charset: what a floor may skip
            body = ""
        if n % FLOOR_COMMIT == 0:
            conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO message (message_id, sender, subject, body, raw) VALUES (?, ?, ?, ?, ?)",
            (
                str(msg["message-id"] or ""),
                str(msg["from"] or ""),
                str(msg["subject"] or ""),
                body,
                raw,
            ),
        )
        n += 1
        if n % FLOOR_COMMIT == 0:
            conn.execute("COMMIT")
    if conn.in_transaction:
        conn.execute("COMMIT")
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    conn.close()
    return n / wall, cpu * 1000 / max(n, 1)


def _become_subreaper(on: bool) -> bool:
    """Orphaned descendants (the facts workers' forkserver) are handed to this process,
    so their CPU time is counted once they are reaped.  False where prctl is missing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _reap_orphans(timeout: float = 5.0) -> None:
    """Wait for descendants handed over to this process (they exit once the command
    that started them has)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # none left
        if pid == 0:
            time.sleep(0.02)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def import_corpus(mbox: Path, workdir: Path) -> tuple[float, float, float, sqlite3.Row]:
    """Ingest and drain into a fresh SQLite database; (ingest s, drain s, CPU s, counts)."""
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
    reaper = _become_subreaper(True)
    try:
        cpu0 = _children_cpu()
        ingest = cli("ingest", "--mbox", str(mbox))
        drain = cli("drain")
        if reaper:
            _reap_orphans()
        cpu = _children_cpu() - cpu0
    finally:
        if reaper:
            _become_subreaper(False)
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
    return ingest, drain, cpu, row


def run(mbox: Path, workdir: Path) -> Batch:
    raws = read_mbox(mbox)
    floor_rate, floor_cpu_ms = stdlib_floor(mbox, workdir)
    ingest, drain, cpu, counts = import_corpus(mbox, workdir)
    return Batch(
        messages=len(raws),
        import_rate=len(raws) / (ingest + drain),
        ingest_seconds=ingest,
        drain_seconds=drain,
        parse_rate=parse_only(raws),
        facts_rate=facts_only(raws),
        floor_rate=floor_rate,
        floor_cpu_ms=floor_cpu_ms,
        import_cpu_ms=cpu * 1000 / len(raws),
        tickets=counts["tickets"],
        articles=counts["articles"],
        quarantined=counts["q"],
    )
