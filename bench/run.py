"""mailgate benchmark: the aiosmtpd no-op ceiling beside mailgate end to end.

Everything runs in one invocation on the same machine, so the figures compare:

  a) ceiling    — the corpus sent over SMTP to an aiosmtpd server that only answers 250;
  b) mailgate   — the same corpus to ``mailgate serve`` (SQLite by default, PostgreSQL
                  with --pg URL): stored, processed into tickets, acknowledged through a
                  relay sink.  Throughput counts until every message is processed.
  c) latency    — a fresh database, the corpus offered at a fixed rate (default 50 msg/s);
                  latency is end of DATA (the 250) → acknowledgement received by the sink.

Usage: python bench/run.py [--n 2000] [--rate 50] [--latency-n 1000] [--pg URL]
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import smtplib
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller

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

    def __init__(self, workdir: Path, db_url: str | None) -> None:
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
            # The bench machine has no resolver; authentication comes from A-R or nothing.
            "MAILGATE_VERIFY__DNS_LOOKUPS": "false",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Mailgate:
        self.controller.start()
        mailgate = str(Path(sys.executable).parent / "mailgate")
        subprocess.run(
            [mailgate, "db", "upgrade"], env=self.env, check=True, stdout=subprocess.DEVNULL
        )
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

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
        self.controller.stop()


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
    messages: list[tuple[str, bytes]], workdir: Path, db_url: str | None, connections: int
) -> tuple[float, int]:
    with Mailgate(workdir, db_url) as mg:
        t0 = time.perf_counter()
        send_all(mg.smtp_port, messages, connections)
        t_end = mg.wait_settled(len(messages))
        return len(messages) / (t_end - t0), mg.sink.count


def bench_latency(
    messages: list[tuple[str, bytes]],
    workdir: Path,
    db_url: str | None,
    rate: float,
    connections: int,
) -> tuple[list[float], int, float]:
    with Mailgate(workdir, db_url) as mg:
        t0 = time.perf_counter()
        sent = send_all(mg.smtp_port, messages, connections, rate=rate)
        offered = len(messages) / (time.perf_counter() - t0)
        mg.wait_settled(len(messages))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the last acks may still be on their way
            with mg.sink.lock:
                if len(mg.sink.arrived) >= mg.sink.count:
                    break
            time.sleep(0.05)
        latencies = [mg.sink.arrived[m] - sent[m] for m in mg.sink.arrived if m in sent]
        return latencies, mg.sink.count, offered


def print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--latency-n", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument(
        "--pg",
        default=os.environ.get("MAILGATE_BENCH_PG", ""),
        help="also run on this PostgreSQL server URL",
    )
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mailgate-bench-"))
    try:
        messages = load_corpus(args.n, workdir)
        size = sum(len(r) for _, r in messages)
        print(
            f"corpus: {len(messages)} messages, {size / 1e6:.1f} MB; "
            f"{args.connections} SMTP connections; machine: {os.cpu_count()} CPUs"
        )
        rows: list[tuple[str, str]] = []
        ceiling = run_ceiling(messages, args.connections)
        rows.append(("a) aiosmtpd no-op ceiling", f"{ceiling:8.1f} msg/s"))
        backends = [("SQLite", None)]
        if args.pg:
            backends.append(("PostgreSQL", args.pg))
        for label, url in backends:
            db = fresh_pg(url, "mailgate_bench_tp") if url else None
            (workdir / label).mkdir()
            rate, acks = bench_mailgate(messages, workdir / label, db, args.connections)
            rows.append(
                (
                    f"b) mailgate end to end, {label}",
                    f"{rate:8.1f} msg/s  ({acks} acks; b/a = {rate / ceiling:.2f})",
                )
            )
            db = fresh_pg(url, "mailgate_bench_lat") if url else None
            (workdir / f"{label}-lat").mkdir()
            lat, acks, offered = bench_latency(
                messages[: args.latency_n],
                workdir / f"{label}-lat",
                db,
                args.rate,
                args.connections,
            )
            rows.append(
                (
                    f"c) latency at {offered:.0f} msg/s offered, {label}",
                    f"p50 {percentile(lat, 50) * 1000:6.0f} ms  p99 "
                    f"{percentile(lat, 99) * 1000:6.0f} ms  max {max(lat) * 1000:6.0f} ms  "
                    f"mean {statistics.mean(lat) * 1000:6.0f} ms  ({len(lat)} acks)",
                )
            )
        print_rows(rows)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
