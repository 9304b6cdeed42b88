"""SIGKILL storm: a real ``mailgate serve`` killed every few seconds while an MTA-like
client keeps sending.  Every message the client heard 250 for must end as exactly one
article, none twice, and the SQLite file must pass ``PRAGMA integrity_check``.

A kill between the commit and the 250 leaves the client without its answer; it sends
the message again, and that second copy must collapse into the first article through
the dedup key — at-least-once intake plus dedup is the promise being measured.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

from tests.faults.client import RetryingSender, numbered_mails
from tests.faults.conftest import FULL, Figures
from tests.process import Mailgate

# The short form must outlast its first kill: since serve listens first, 600 messages
# could all be accepted (about 1.5 s) before a kill 0.5–1.5 s in came.
MESSAGES = 10_000 if FULL else 1_500
KILL_EVERY = (1.0, 7.0) if FULL else (0.3, 1.0)


def storm_daemon(root: Path) -> Mailgate:
    daemon = Mailgate(root)
    daemon.write_config()
    # A killed worker's claims wait for their lease; a short one keeps the run short.
    text = daemon.config.read_text().replace(
        "sweep_seconds = 2", "sweep_seconds = 1\nlease_seconds = 5"
    )
    daemon.config.write_text(text)
    return daemon


class Killer(threading.Thread):
    """Kills the daemon with SIGKILL at random intervals and starts it again."""

    def __init__(self, daemon: Mailgate, every: tuple[float, float]) -> None:
        super().__init__(daemon=True)
        self.mailgate = daemon
        self.every = every
        self.stop = threading.Event()
        self.kills = 0
        # Seconds from SIGKILL until the new daemon greets on SMTP (it takes mail
        # again), and until /readyz answers 200 (the pipeline is up behind it).
        self.restarts: list[float] = []
        self.ready: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        rnd = random.Random(8)
        try:
            while not self.stop.wait(rnd.uniform(*self.every)):
                proc = self.mailgate.proc
                assert proc is not None
                killed_at = time.monotonic()
                proc.kill()
                proc.wait(10)
                self.kills += 1
                # What a service manager does after a crash: exec serve again on the
                # migrated database.
                self.mailgate.serve()
                self.mailgate.wait_greeting()
                self.restarts.append(time.monotonic() - killed_at)
                self.mailgate.wait_ready()
                self.ready.append(time.monotonic() - killed_at)
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc


def test_sigkill_storm_loses_and_duplicates_nothing(tmp_path: Path, figures: Figures) -> None:
    daemon = storm_daemon(tmp_path / "storm")
    mails = numbered_mails("storm", MESSAGES)
    daemon.start()
    killer = Killer(daemon, KILL_EVERY)
    sender = RetryingSender(daemon.smtp_port, mails, workers=8, timeout=20)
    try:
        killer.start()
        outcomes = sender.run()
        killer.stop.set()
        killer.join(60)
        assert killer.error is None, killer.error
        # Drain: the last daemon processes what is left, including claims whose
        # holder was killed (reclaimed once their lease runs out).
        drained_from = time.monotonic()
        db = str(tmp_path / "storm" / "mailgate.db")
        pending = _wait_drained(db, timeout=180)
        drain_seconds = time.monotonic() - drained_from
    finally:
        killer.stop.set()
        daemon.stop()

    acked = {f"storm-{i}@customer.example" for i, o in enumerate(outcomes) if o.accepted}
    rejected = [i for i, o in enumerate(outcomes) if o.rejected]
    with sqlite3.connect(db, timeout=30) as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        stored = Counter(mid for (mid,) in conn.execute("SELECT message_id FROM inbound_message"))
        articles = Counter(
            mid
            for (mid,) in conn.execute(
                "SELECT message_id FROM article"
                " WHERE direction = 'in' AND message_id LIKE 'storm-%'"
            )
        )
        statuses = dict(conn.execute("SELECT status, count(*) FROM inbound_message GROUP BY 1"))
    resent = sum(1 for n in stored.values() if n > 1)
    lost = sorted(acked - set(articles))
    not_stored = sorted(acked - set(stored))
    duplicated = sorted(mid for mid, n in articles.items() if n > 1)
    figures["sent"] = MESSAGES
    figures["accepted"] = len(acked)
    figures["lost"] = len(lost)
    figures["duplicated"] = len(duplicated)
    figures["resent_after_lost_250"] = resent
    figures["kills"] = killer.kills
    figures["restart_s_max"] = max(killer.restarts, default=0.0)
    figures["restart_to_ready_s_max"] = max(killer.ready, default=0.0)
    figures["drain_after_storm_s"] = drain_seconds
    figures["msg_per_s"] = len(acked) / sender.elapsed
    figures["statuses"] = statuses

    assert killer.kills >= 1, "the storm never killed the daemon"
    assert not rejected, f"5xx for messages {rejected[:10]}"
    assert len(acked) == MESSAGES
    assert not_stored == [], f"250 without an inbound row: {not_stored[:10]}"
    assert lost == [], f"250 without an article: {lost[:10]}"
    assert duplicated == [], f"duplicate articles: {duplicated[:10]}"
    assert pending == 0
    assert set(statuses) == {"done"}, statuses
    assert integrity == "ok"


def _wait_drained(db: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(db, timeout=30) as conn:
            pending = conn.execute(
                "SELECT count(*) FROM inbound_message"
                " WHERE status IN ('received', 'retry', 'processing')"
            ).fetchone()[0]
        if pending == 0 or time.monotonic() > deadline:
            return int(pending)
        time.sleep(0.2)
