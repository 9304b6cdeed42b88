"""mailgate benchmark, IMAP side: a Dovecot folder of generated support mail to tickets.

The same corpus as ``bench/run.py`` (``../shared/corpus/gen_corpus.py``) is APPENDed to
a private Dovecot on loopback, then:

  a) poll-once — ``mailgate imap poll-once`` into an empty database: IMAP → stored rows
                 only (no processing), the import rate of a first sync;
  b) serve     — ``mailgate serve`` with the folder in ``[[imap]]``: IMAP → stored →
                 processed into tickets (acknowledgements relayed to a sink, as for SMTP),
                 counted until every message is processed;
  c) SMTP      — for comparison, the same corpus sent over SMTP to ``mailgate serve``
                 (``bench/run.py``'s figure b), skipped with --no-smtp.

Needs root and Debian's dovecot-imapd (as the tests do).  SQLite by default;
--pg URL runs on a fresh PostgreSQL database instead.

Usage: python bench/imap.py [--n 2000] [--batch-size 100] [--pg URL] [--no-smtp]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.dovecot, the test suite's Dovecot harness

from run import Mailgate, Row, bench_mailgate, fresh_pg, load_corpus, print_table  # noqa: E402

from tests.dovecot import PASSWORD, Dovecot, binary  # noqa: E402

PASSWORD_ENV = "MAILGATE_BENCH_IMAP_PASSWORD"


def fill(dovecot: Dovecot, messages: list[tuple[str, bytes]]) -> str:
    user = dovecot.new_user()
    client = dovecot.client(user)
    try:
        raws = [raw for _, raw in messages]
        for start in range(0, len(raws), 200):
            client.multiappend("INBOX", raws[start : start + 200])
    finally:
        client.logout()
    return user


def write_config(path: Path, dovecot: Dovecot, user: str, batch_size: int) -> None:
    # [[imap]] is file-only; everything else comes from Mailgate's environment.
    path.write_text(
        f'[[imap]]\nname = "bench"\nhost = "127.0.0.1"\nport = {dovecot.port}\n'
        f'tls = "none"\nusername = "{user}"\npassword_env = "{PASSWORD_ENV}"\n'
        # Acknowledge the corpus so the work matches the SMTP run's.
        f"acknowledge_existing = true\nbatch_size = {batch_size}\n"
    )


@dataclass
class Setup:
    dovecot: Dovecot
    messages: list[tuple[str, bytes]]
    workdir: Path
    pg: str
    batch: int

    def run(self, name: str) -> tuple[Mailgate, Path]:
        """A fresh folder holding the corpus, a fresh database, and mailgate's config."""
        user = fill(self.dovecot, self.messages)
        workdir = self.workdir / name
        workdir.mkdir()
        mg = Mailgate(workdir, fresh_pg(self.pg, f"mg_bench_{name}") if self.pg else None)
        config = workdir / "imap.toml"
        write_config(config, self.dovecot, user, self.batch)
        return mg, config


def bench_poll_once(setup: Setup) -> float:
    mg, config = setup.run("poll")
    env = {**mg.env, "MAILGATE_CONFIG": str(config), PASSWORD_ENV: PASSWORD}
    mailgate = str(Path(sys.executable).parent / "mailgate")
    subprocess.run([mailgate, "db", "upgrade"], env=env, check=True, stdout=subprocess.DEVNULL)
    t0 = time.perf_counter()
    done = subprocess.run(
        [mailgate, "imap", "poll-once"], env=env, check=True, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - t0
    print(f"  poll-once: {done.stdout.strip()}")
    return len(setup.messages) / elapsed


def bench_serve(setup: Setup) -> tuple[float, float, int]:
    """(msg/s stored, msg/s processed into tickets, acknowledgements) from serve start."""
    mg, config = setup.run("serve")
    mg.env.update({"MAILGATE_CONFIG": str(config), PASSWORD_ENV: PASSWORD})
    n = len(setup.messages)
    t0 = time.perf_counter()  # the pollers start with the daemon: count its start-up too
    with mg:
        stored_at = wait_rows(mg, n)
        settled_at = mg.wait_settled(n)
        return n / (stored_at - t0), n / (settled_at - t0), mg.sink.count


def wait_rows(mg: Mailgate, n: int, timeout: float = 600) -> float:
    """When the n-th message is stored (processed or not)."""
    deadline = time.monotonic() + timeout
    while (count := mg.count("SELECT count(*) FROM inbound_message")) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {count} of {n} stored")
        time.sleep(0.05)
    return time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--connections", type=int, default=8, help="SMTP connections for c)")
    ap.add_argument("--pg", default=os.environ.get("MAILGATE_BENCH_PG", ""))
    ap.add_argument("--no-smtp", action="store_true", help="skip the SMTP comparison")
    args = ap.parse_args()
    executable = binary()
    if executable is None or os.geteuid() != 0:
        sys.exit("needs root and dovecot-imapd (apt-get install dovecot-imapd)")
    workdir = Path(tempfile.mkdtemp(prefix="mailgate-bench-imap-"))
    dovecot = Dovecot(executable)
    dovecot.start()
    try:
        messages = load_corpus(args.n, workdir)
        size = sum(len(r) for _, r in messages)
        label = "PostgreSQL" if args.pg else "SQLite"
        print(
            f"corpus: {len(messages)} messages, {size / 1e6:.1f} MB; {label}; "
            f"IMAP batch {args.batch_size}; machine: {os.cpu_count()} CPUs"
        )
        setup = Setup(dovecot, messages, workdir, args.pg, args.batch_size)
        rows: list[tuple[str, str]] = []
        rate = bench_poll_once(setup)
        rows.append(("a) IMAP poll-once, stored only", f"{rate:8.1f} msg/s"))
        stored, settled, acks = bench_serve(setup)
        rows.append(("b) IMAP → serve, stored", f"{stored:8.1f} msg/s"))
        rows.append(("b) IMAP → serve, tickets committed", f"{settled:8.1f} msg/s  ({acks} acks)"))
        if not args.no_smtp:
            (workdir / "smtp").mkdir()
            smtp_db = fresh_pg(args.pg, "mg_bench_smtp") if args.pg else None
            smtp_rate, smtp_acks = bench_mailgate(
                messages, workdir / "smtp", smtp_db, args.connections
            )
            rows.append(
                (
                    f"c) SMTP ({args.connections} conns) → serve, tickets committed",
                    f"{smtp_rate:8.1f} msg/s  ({smtp_acks} acks)",
                )
            )
        print_table([Row(name, value.strip()) for name, value in rows])
    finally:
        dovecot.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
