"""mailgate benchmark: every performance figure of issue 8 in one table, one run.

``make bench`` (= ``python bench/run.py``) runs every part on the same machine and prints
one table: each figure, its target, the ratio (measured ÷ target bound; for the batch
row import ÷ parse-only, for lookups 1 M ÷ 10 k) and the verdict.  The corpus is
``../shared/corpus/gen_corpus.py --n 2000 --thread-by headers`` (MAILGATE_CORPUS_GEN
names another generator with the same command line).  PostgreSQL runs at
postgresql+psycopg://postgres@127.0.0.1:5432/test unless --pg says otherwise ('' for
none, or when it is unreachable); every PostgreSQL part gets a fresh database.

  ceiling — the corpus sent over 8 SMTP connections to an aiosmtpd server that only
            answers 250 (bench/noop_server.py): what the SMTP layer alone allows.
  smtp    — the same corpus to ``mailgate serve`` (SQLite, then PostgreSQL): stored,
            processed into tickets, acknowledgements relayed to a sink in this process;
            msg/s counted from the first connection until every message is processed.
            Target ≥ 100 msg/s.  Then a fresh database: the first message alone (it
            also waits for the facts workers, which start with the first batch; its
            latency is printed on its own), then the next 999 offered at a fixed
            50 msg/s (open loop); latency is the sender's 250 → the acknowledgement
            reaching the sink, p50 and p99.  Target p99 ≤ 1 s.
  batch   — bench/batch.py: ``mailgate ingest --mbox`` + ``mailgate drain`` of the corpus
            into a fresh SQLite database, msg/s over both; beside mail-parser's
            ``parse_from_bytes`` over the same messages in one process (parse-only) and
            ``mailgate.pipeline.facts.analyze`` alone.  Target: import ≥ 50 % of parse-only,
            and ≥ 0.8 × the stdlib floor (email + SQLite, one process; bench/batch.py).
  rss     — bench/rss.py: one message with a 25 MB base64 attachment over SMTP to
            ``mailgate serve``, processed to a ticket and acknowledged; the peak is the
            sum of VmHWM over the daemon's process tree.  Target ≤ 4 × message + 100 MB.
  start   — bench/start.py: exec of ``mailgate serve`` → its first SMTP greeting byte,
            median of 7, beside the no-op aiosmtpd server started alternately in the same
            run; exec → /readyz 200; the idle process tree.  Target ≤ 3 × no-op, ≤ 150 MB.
  storm   — bench/storm.py: the full-size SIGKILL storm (tests/faults), its msg/s and
            slowest restart.  Target ≥ 150 msg/s, restart ≤ 1 s, 0 lost, 0 duplicated.
  lookup  — bench/lookup.py: tickets filled by bulk INSERT … SELECT to 10 000, then
            1 000 000; the median of 1 000 random ``ticket show`` reads (cli.ticket_doc)
            at each size, on SQLite and PostgreSQL.  Target: 1 M ≤ 1.5 × 10 k.
  pipe    — bench/pipe.py: ``mailgate ingest`` per message (the MTA's pipe) with ``serve``
            running, handing over its LMTP socket; beside the stdlib floor (parse with
            ``email`` + SQLite commit, one process per message) and the same command
            storing directly (no socket), alternated in one run.  Target: p50 ≤ 1.3 × floor.

The machine is whatever runs it: the load average is printed at the start and the end,
and figures from a busy machine say little.

  --dns   — the smtp rows again with ``[verify] dns_lookups = true`` against a stub DNS
            server on loopback (bench/dnsstub.py: TXT for _dmarc.* and *._domainkey.*,
            NXDOMAIN otherwise) answering after --dns-delay-ms (20 ms); without it the
            daemon runs with look-ups off, as the machine has no resolver.

Usage: python bench/run.py [--only ceiling,smtp,batch,rss,start,storm,lookup,pipe] [--pg URL]
       [--n 2000] [--rate 50] [--latency-n 1000] [--lookup-sizes 10000,1000000] [--pipe-n 40]
       [--small] [--dns] [--dns-delay-ms 20]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import re
import shutil
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.controller import Controller
from dnsstub import StubDns

ROOT = Path(__file__).resolve().parents[1]
CORPUS_GEN = Path(
    os.environ.get("MAILGATE_CORPUS_GEN", ROOT.parent / "shared/corpus/gen_corpus.py")
)
MID = re.compile(rb"^In-Reply-To:\s*<([^>]+)>", re.MULTILINE | re.IGNORECASE)
OWN_MID = re.compile(rb"^Message-ID:\s*<([^>]+)>", re.MULTILINE | re.IGNORECASE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def load_corpus(n: int, workdir: Path) -> list[tuple[str, bytes]]:
    out = workdir / "corpus"
    subprocess.run(
        [
            sys.executable,
            str(CORPUS_GEN),
            "--n",
            str(n),
            "--out",
            str(out),
            "--support-addr",
            "support@helpdesk.example",
            "--thread-by",
            "headers",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    messages = []
    for path in sorted((out / "eml").glob("*.eml")):
        raw = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        mid = OWN_MID.search(raw)
        messages.append((mid.group(1).decode() if mid else path.name, raw))
    return messages


class Sink:
    """Relay sink: records when each acknowledgement arrives, keyed by In-Reply-To."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        now = time.perf_counter()
        data = envelope.original_content  # type: ignore[attr-defined]
        match = MID.search(data)
        with self.lock:
            self.count += 1
            if match:
                self.arrived.setdefault(match.group(1).decode(), now)
        return "250 2.0.0 OK"


def send_all(
    port: int, messages: list[tuple[str, bytes]], connections: int, rate: float | None = None
) -> dict[str, float]:
    """Send with ``connections`` parallel SMTP sessions; return message-id → time of 250.

    With ``rate`` the messages are offered on a fixed schedule (open loop)."""
    jobs: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
    done: dict[str, float] = {}
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        client = smtplib.SMTP("127.0.0.1", port, timeout=60)
        while (job := jobs.get()) is not None:
            mid, raw = job
            for _attempt in range(20):
                try:
                    client.sendmail("customer@customer.example", ["support@helpdesk.example"], raw)
                    break
                except smtplib.SMTPResponseException as exc:
                    if exc.smtp_code < 500:  # 4xx: retry like an MTA would
                        time.sleep(0.2)
                        continue
                    errors.append(f"{mid}: {exc}")
                    break
            with lock:
                done[mid] = time.perf_counter()
        client.quit()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    for i, job in enumerate(messages):
        if rate:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        jobs.put(job)
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join()
    if errors:
        print(f"  {len(errors)} permanent errors, first: {errors[0]}")
    return done


def run_ceiling(messages: list[tuple[str, bytes]], connections: int) -> float:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench/noop_server.py"), str(port)])
    try:
        wait_port(port)
        t0 = time.perf_counter()
        send_all(port, messages, connections)
        return len(messages) / (time.perf_counter() - t0)
    finally:
        proc.terminate()
        proc.wait(10)


class Mailgate:
    """``mailgate serve`` in a subprocess, relaying to a sink in this process."""

    def __init__(
        self, workdir: Path, db_url: str | None, env: dict[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        self.sink = Sink()
        self.sink_port = free_port()
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.sink_port)
        self.smtp_port = free_port()
        self.db_path = workdir / "mailgate.db"
        self.db_url = db_url or f"sqlite:///{self.db_path}"
        self.env = {
            **os.environ,
            "MAILGATE_DATABASE__URL": self.db_url,
            "MAILGATE_SMTP__LISTEN": f"127.0.0.1:{self.smtp_port}",
            "MAILGATE_LMTP__LISTEN": "",
            "MAILGATE_HTTP__LISTEN": "",
            "MAILGATE_OUTBOUND__RELAY": f"127.0.0.1:{self.sink_port}",
            "MAILGATE_OUTBOUND__TLS": "insecure",  # the sink is on loopback
            # The corpus repeats senders and is replayed in a burst: lift the loop limits
            # so every message is acknowledged (their queries still run and are timed).
            "MAILGATE_LIMITS__ACKS_PER_RECIPIENT_PER_DAY": "1000000000",
            "MAILGATE_LIMITS__BREAKER_THRESHOLD": "1000000000",
            "MAILGATE_LOG__LEVEL": "WARNING",
            # The bench machine has no resolver; authentication comes from A-R or nothing
            # (``--dns`` adds rows with look-ups against bench/dnsstub.py).
            "MAILGATE_VERIFY__DNS_LOOKUPS": "false",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Mailgate:
        self.controller.start()
        migrate(self.db_url)
        mailgate = str(Path(sys.executable).parent / "mailgate")
        self.proc = subprocess.Popen([mailgate, "serve"], env=self.env)
        wait_port(self.smtp_port)
        return self

    def count(self, sql: str) -> int:
        """The single number a ``SELECT count(*)`` gives, on either backend."""
        if self.db_url.startswith("sqlite"):
            with sqlite3.connect(self.db_path, timeout=10) as conn:
                return int(conn.execute(sql).fetchone()[0])
        import psycopg

        with psycopg.connect(self.db_url.replace("+psycopg", ""), connect_timeout=5) as conn:
            return int(conn.execute(sql).fetchone()[0])  # type: ignore[index]

    def settled(self) -> int:
        """Inbound messages processed (done or quarantined)."""
        return self.count(
            "SELECT count(*) FROM inbound_message WHERE status IN ('done', 'quarantined')"
        )

    def wait_settled(self, n: int, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while self.settled() < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.settled()} of {n} processed")
            time.sleep(0.05)
        return time.perf_counter()

    def wait_sent(self, timeout: float = 30) -> None:
        """Until the outbox holds nothing pending and every message the sink took is
        counted (a processed message's acknowledgement may not have left yet)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count("SELECT count(*) FROM outbox_message WHERE status = 'pending'") == 0:
                with self.sink.lock:
                    if len(self.sink.arrived) >= self.sink.count:
                        return
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
        self.controller.stop()


def migrate(url: str) -> None:
    """``mailgate db upgrade``, in this process (a second interpreter start saved)."""
    from mailgate.config import DatabaseSettings
    from mailgate.store import migrate as store_migrate
    from mailgate.store.db import make_engine

    engine = make_engine(DatabaseSettings(url=url))
    try:
        store_migrate.upgrade(engine)
    finally:
        engine.dispose()


def fresh_pg(url: str, name: str) -> str:
    import psycopg

    admin = url.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def bench_mailgate(
    messages: list[tuple[str, bytes]],
    workdir: Path,
    db_url: str | None,
    connections: int,
    env: dict[str, str] | None = None,
) -> tuple[float, int]:
    with Mailgate(workdir, db_url, env) as mg:
        t0 = time.perf_counter()
        send_all(mg.smtp_port, messages, connections)
        t_end = mg.wait_settled(len(messages))
        mg.wait_sent()  # for the count of acknowledgements, not the rate
        return len(messages) / (t_end - t0), mg.sink.count


def bench_latency(
    messages: list[tuple[str, bytes]],
    workdir: Path,
    db_url: str | None,
    rate: float,
    connections: int,
    env: dict[str, str] | None = None,
) -> tuple[list[float], int, float, float | None]:
    """Receipt → ack latencies of ``messages[1:]`` offered at ``rate``, their ack count,
    the rate offered, and the first message's own latency.

    The first message is sent alone and acknowledged before the timed run: ``serve``
    greets before its facts workers exist and starts them with the first batch (issue
    21), so the first message after a start also waits for them.  That cold figure is
    returned beside the steady-state ones rather than mixed into their p99.
    """
    with Mailgate(workdir, db_url, env) as mg:
        first = send_all(mg.smtp_port, messages[:1], 1)
        mg.wait_settled(1)
        mg.wait_sent()
        cold = next((mg.sink.arrived[m] - first[m] for m in first if m in mg.sink.arrived), None)
        warm_acks = mg.sink.count
        t0 = time.perf_counter()
        sent = send_all(mg.smtp_port, messages[1:], connections, rate=rate)
        offered = (len(messages) - 1) / (time.perf_counter() - t0)
        mg.wait_settled(len(messages))
        mg.wait_sent()
        latencies = [mg.sink.arrived[m] - sent[m] for m in mg.sink.arrived if m in sent]
        return latencies, mg.sink.count - warm_acks, offered, cold


@dataclass
class Row:
    figure: str
    measured: str
    target: str = ""
    ratio: str = ""
    verdict: str = ""  # "met", "NOT met", or "" for a reference figure


def at_least(value: float, floor: float) -> tuple[str, str]:
    return f"{value / floor:.2f}", "met" if value >= floor else "NOT met"


def at_most(value: float, ceiling: float) -> tuple[str, str]:
    return f"{value / ceiling:.2f}", "met" if value <= ceiling else "NOT met"


def print_table(rows: list[Row]) -> None:
    head = Row("figure", "measured", "target", "ratio", "verdict")
    cols = [
        max(len(getattr(r, f)) for r in [head, *rows])
        for f in ("figure", "measured", "target", "ratio", "verdict")
    ]
    print()
    for i, r in enumerate([head, *rows]):
        cells = [r.figure, r.measured, r.target, r.ratio, r.verdict]
        print("| " + " | ".join(c.ljust(w) for c, w in zip(cells, cols, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in cols) + "|")
    sys.stdout.flush()


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def pg_reachable(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url.replace("+psycopg", ""), connect_timeout=3).close()
    except psycopg.Error as exc:
        print(f"PostgreSQL at {url} not reachable ({exc.__class__.__name__}): skipped")
        return False
    return True


def drop_pg(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def smtp_rows(
    args: argparse.Namespace,
    messages: list[tuple[str, bytes]],
    workdir: Path,
    backends: list[tuple[str, str | None]],
    ceiling: float | None,
) -> list[Row]:
    rows: list[Row] = []
    for label, url, env in with_dns_settings(args, backends):
        db = fresh_pg(url, "mailgate_bench_tp") if url else None
        (workdir / label).mkdir()
        rate, acks = bench_mailgate(messages, workdir / label, db, args.connections, env)
        of_ceiling = f", {rate / ceiling:.2f} of the ceiling" if ceiling else ""
        rows.append(
            Row(
                f"mailgate SMTP end to end, {label}",
                f"{rate:.1f} msg/s ({acks} acks{of_ceiling})",
                "≥ 100 msg/s",
                *at_least(rate, 100.0),
            )
        )
        db = fresh_pg(url, "mailgate_bench_lat") if url else None
        (workdir / f"{label}-lat").mkdir()
        lat, acks, offered, cold = bench_latency(
            messages[: args.latency_n],
            workdir / f"{label}-lat",
            db,
            args.rate,
            args.connections,
            env,
        )
        p99 = percentile(lat, 99)
        rows.append(
            Row(
                f"receipt → ack at {offered:.0f} msg/s, {label}",
                f"p50 {percentile(lat, 50) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms "
                f"({len(lat)} acks; the first message after the start, alone: "
                f"{'no ack' if cold is None else f'{cold * 1000:.0f} ms'})",
                f"p99 ≤ 1 s at {args.rate:.0f} msg/s",
                *at_most(p99, 1.0),
            )
        )
    return rows


def with_dns_settings(
    args: argparse.Namespace, backends: list[tuple[str, str | None]]
) -> list[tuple[str, str | None, dict[str, str]]]:
    """Each backend with DNS look-ups off; with ``--dns`` also on, against the stub."""
    runs: list[tuple[str, str | None, dict[str, str]]] = []
    for label, url in backends:
        runs.append((label, url, {}))
        if args.stub_dns is not None:
            on = {
                "MAILGATE_VERIFY__DNS_LOOKUPS": "true",
                "MAILGATE_VERIFY__NAMESERVERS": f"127.0.0.1:{args.stub_dns.port}",
            }
            runs.append((f"{label}, DNS stub {args.dns_delay_ms:g} ms", url, on))
    return runs


def batch_rows(mbox: Path, workdir: Path) -> list[Row]:
    import batch

    (workdir / "batch").mkdir()
    b = batch.run(mbox, workdir / "batch")
    share = b.import_rate / b.parse_rate
    of_floor = b.import_rate / b.floor_rate
    return [
        Row(
            f"batch import (ingest --mbox + drain), {b.messages} msgs",
            f"{b.import_rate:.1f} msg/s, {b.import_cpu_ms:.1f} CPU ms/msg (ingest "
            f"{b.ingest_seconds:.1f} s, drain {b.drain_seconds:.1f} s; {b.tickets} tickets, "
            f"{b.articles} articles, {b.quarantined} quarantined)",
            "≥ 0.50 × parse-only",
            f"{share:.2f}",
            "met" if share >= 0.5 else "NOT met",
        ),
        Row(
            "batch import ÷ stdlib floor",
            f"floor {b.floor_rate:.1f} msg/s, {b.floor_cpu_ms:.1f} CPU ms/msg (email + "
            f"SQLite, 1 process, COMMIT per {batch.FLOOR_COMMIT})",
            "≥ 0.8 × floor",
            f"{of_floor:.2f}",
            "met" if of_floor >= 0.8 else "NOT met",
        ),
        Row("parse-only (mail-parser, 1 process)", f"{b.parse_rate:.1f} msg/s"),
        Row("facts stage alone (facts.analyze, 1 process)", f"{b.facts_rate:.1f} msg/s"),
    ]


def rss_rows(workdir: Path, attachment_bytes: int) -> list[Row]:
    import rss

    (workdir / "rss").mkdir()
    r = rss.run(workdir / "rss", attachment_bytes)
    mb = 1e6
    limit = 4 * r.message_bytes + 100 * mb
    return [
        Row(
            f"peak RSS, {attachment_bytes / mb:.0f} MB attachment "
            f"({r.message_bytes / mb:.1f} MB message)",
            f"{r.hwm / mb:.0f} MB (Σ VmHWM of {r.processes} processes; sampled peak "
            f"{r.sampled / mb:.0f} MB, idle {r.idle / mb:.0f} MB)",
            f"≤ {limit / mb:.0f} MB (4 × message + 100 MB)",
            *at_most(r.hwm, limit),
        ),
        Row(
            "peak RSS growth over idle",
            f"{(r.hwm - r.idle) / mb:.0f} MB ({(r.hwm - r.idle) / r.message_bytes:.1f} × "
            f"the message); 250 → ack {r.seconds:.1f} s",
        ),
        Row(
            "peak RSS by process (idle → VmHWM)",
            "; ".join(
                f"{name} {idle / mb:.0f} → {hwm / mb:.0f} MB"
                for name, idle, hwm in sorted(r.by_process, key=lambda p: -p[2])
            ),
        ),
    ]


def lookup_rows(
    sizes: tuple[int, int], lookups: int, workdir: Path, backends: list[tuple[str, str | None]]
) -> list[Row]:
    import lookup

    rows: list[Row] = []
    for label, url in backends:
        db = fresh_pg(url, "mailgate_bench_lookup") if url else f"sqlite:///{workdir}/lookup.db"
        try:
            small, big = lookup.run(db, sizes, lookups)
        finally:
            if url:
                drop_pg(url, "mailgate_bench_lookup")
        for r in (small, big):
            rows.append(
                Row(
                    f"ticket lookup by number, {r.tickets:,} tickets, {label}",
                    f"median {r.number_ms:.2f} ms, p99 {r.number_p99_ms:.2f} ms "
                    f"(by Message-ID {r.msgid_ms:.2f} ms, by reply token {r.token_ms:.2f} ms; "
                    f"fill {r.fill_seconds:.0f} s)",
                )
            )
        rows.append(
            Row(
                f"lookup {big.tickets:,} / {small.tickets:,} tickets, {label}",
                f"{big.number_ms / small.number_ms:.2f} by number "
                f"({big.msgid_ms / small.msgid_ms:.2f} by Message-ID, "
                f"{big.token_ms / small.token_ms:.2f} by token)",
                "≤ 1.5",
                *at_most(big.number_ms / small.number_ms, 1.5),
            )
        )
    return rows


def pipe_rows(messages: list[tuple[str, bytes]], workdir: Path, rounds: int) -> list[Row]:
    import pipe

    (workdir / "pipe").mkdir()
    p = pipe.run([raw for _, raw in messages], workdir / "pipe", rounds)
    ratio = p.pipe.p50_ms / p.floor.p50_ms
    return [
        Row(
            f"pipe: ingest per message via the daemon's socket, {p.rounds} msgs",
            f"{p.pipe.describe()}; load {p.load}",
            "p50 ≤ 1.3 × floor",
            f"{ratio:.2f}",
            "met" if ratio <= 1.3 else "NOT met",
        ),
        Row("pipe floor (stdlib email + SQLite commit, 1 process/msg)", p.floor.describe()),
        Row(
            "pipe without the daemon (ingest stores directly)",
            f"{p.direct.describe()}; {p.direct.p50_ms / p.floor.p50_ms:.1f} × floor",
        ),
    ]


PARTS = ("ceiling", "smtp", "batch", "rss", "start", "storm", "lookup", "pipe")
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="corpus size (messages)")
    ap.add_argument("--latency-n", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=50.0, help="offered msg/s for latency")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument(
        "--pg",
        default=os.environ.get("MAILGATE_BENCH_PG", DEFAULT_PG),
        help="PostgreSQL server URL (a fresh database is made per run); '' for none",
    )
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated: {','.join(PARTS)}")
    ap.add_argument("--lookup-sizes", default="10000,1000000")
    ap.add_argument("--lookups", type=int, default=1000, help="timed lookups per size")
    ap.add_argument("--attachment-mb", type=float, default=25.0)
    ap.add_argument("--pipe-n", type=int, default=40, help="pipe rounds (processes per way)")
    ap.add_argument(
        "--dns",
        action="store_true",
        help="smtp also with DKIM/DMARC look-ups on, against a stub DNS server "
        "(bench/dnsstub.py) on loopback",
    )
    ap.add_argument("--dns-delay-ms", type=float, default=20.0, help="the stub's delay")
    ap.add_argument(
        "--small", action="store_true", help="tiny sizes: checks the bench runs, not speed"
    )
    args = ap.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    if unknown := set(parts) - set(PARTS):
        ap.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if args.small:
        args.n, args.latency_n, args.lookups = 40, 20, 50
        args.lookup_sizes, args.attachment_mb = "200,2000", 1.0
        args.pipe_n = 4
    sizes = tuple(int(x) for x in args.lookup_sizes.split(","))
    assert len(sizes) == 2, "--lookup-sizes takes two sizes"
    backends: list[tuple[str, str | None]] = [("SQLite", None)]
    if args.pg and {"smtp", "lookup"} & set(parts) and pg_reachable(args.pg):
        backends.append(("PostgreSQL", args.pg))

    workdir = Path(tempfile.mkdtemp(prefix="mailgate-bench-"))
    started = time.monotonic()
    print(f"machine: {os.cpu_count()} CPUs; load average at start {load_average()}")
    try:
        messages: list[tuple[str, bytes]] = []
        if {"ceiling", "smtp", "batch", "pipe"} & set(parts):
            messages = load_corpus(args.n, workdir)
            size = sum(len(r) for _, r in messages)
            print(
                f"corpus: {len(messages)} messages, {size / 1e6:.1f} MB; "
                f"{args.connections} SMTP connections"
            )
        rows: list[Row] = []
        ceiling = None
        if "ceiling" in parts:
            ceiling = run_ceiling(messages, args.connections)
            rows.append(Row("aiosmtpd no-op ceiling", f"{ceiling:.1f} msg/s"))
        # The table so far after each part, in case a later one fails.
        if "smtp" in parts:
            with contextlib.ExitStack() as stack:
                args.stub_dns = None
                if args.dns:
                    args.stub_dns = stack.enter_context(StubDns(args.dns_delay_ms / 1000))
                rows += smtp_rows(args, messages, workdir, backends, ceiling)
                if args.stub_dns is not None:
                    print(f"stub DNS: {args.stub_dns.protocol.queries} queries answered")
            print_table(rows)
        if "batch" in parts:
            rows += batch_rows(workdir / "corpus/corpus.mbox", workdir)
            print_table(rows)
        if "rss" in parts:
            rows += rss_rows(workdir, int(args.attachment_mb * 1_000_000))
            print_table(rows)
        if "start" in parts:
            import start

            rows += start.rows(3 if args.small else 7, workdir)
            print_table(rows)
        if "storm" in parts:
            import storm

            rows += storm.rows(full=not args.small)
            print_table(rows)
        if "lookup" in parts:
            rows += lookup_rows(sizes, args.lookups, workdir, backends)
        if "pipe" in parts:
            rows += pipe_rows(messages, workdir, args.pipe_n)
        print("\nFINAL")
        print_table(rows)
        met = sum(r.verdict == "met" for r in rows)
        missed = sum(r.verdict == "NOT met" for r in rows)
        print(
            f"\n{met} targets met, {missed} not met; {time.monotonic() - started:.0f} s; "
            f"load average at end {load_average()}"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
