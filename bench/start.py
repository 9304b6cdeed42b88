"""Start-up: exec of ``mailgate serve`` → the first byte of its SMTP greeting.

What a crash costs an MTA that is waiting: the time from ``exec`` until the daemon
greets on its SMTP port.  Measured beside the floor, bench/noop_server.py (an aiosmtpd
server whose handler only answers 250), the two started alternately in the same run so
that the machine's load falls on both alike; the median of ``rounds`` starts of each.

Each ``mailgate serve`` starts on a fresh copy of one migrated SQLite database, with
its HTTP endpoints on; the run also records when ``/readyz`` first answers 200 (the
pipeline and the facts workers are up behind the listener) and the process tree's
resident memory once it is idle (the daemon, and whatever processes it has started by
then).  Target: greeting ≤ 3 × the no-op server's.

Usage: python bench/start.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rss import settle, tree_sum
from run import Row, at_most, free_port, load_average, migrate

ROOT = Path(__file__).resolve().parents[1]
MB = 1_000_000


@dataclass
class Start:
    mailgate: list[float]  # seconds, exec → first greeting byte
    noop: list[float]
    ready: list[float]  # seconds, exec → /readyz 200
    idle_bytes: int  # VmRSS of the daemon's tree once settled (last round)
    processes: int

    @property
    def ratio(self) -> float:
        return statistics.median(self.mailgate) / statistics.median(self.noop)


def first_byte(port: int, started: float, proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Seconds from ``started`` until a connection to ``port`` yields its first byte."""
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode} before greeting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
                if conn.recv(1):
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.002)
    raise RuntimeError(f"no greeting on port {port} within {timeout} s")


def ready_after(port: int, started: float, timeout: float) -> float:
    """Seconds from ``started`` until GET /readyz on ``port`` answers 200."""
    deadline = started + timeout
    url = f"http://127.0.0.1:{port}/readyz"
    while time.perf_counter() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.01)
    raise RuntimeError(f"/readyz not 200 within {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def noop_once() -> float:
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench/noop_server.py"), str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        return first_byte(port, t0, proc, 30)
    finally:
        stop(proc)


def mailgate_once(
    template: Path, workdir: Path, measure_idle: bool
) -> tuple[float, float, int, int]:
    db = workdir / "mailgate.db"
    shutil.copyfile(template, db)
    smtp, http = free_port(), free_port()
    env = {
        **os.environ,
        "MAILGATE_DATABASE__URL": f"sqlite:///{db}",
        "MAILGATE_SMTP__LISTEN": f"127.0.0.1:{smtp}",
        "MAILGATE_LMTP__LISTEN": "",
        "MAILGATE_HTTP__LISTEN": f"127.0.0.1:{http}",
        "MAILGATE_OUTBOUND__MAILDIR": str(workdir / "outbox"),
        "MAILGATE_LOG__LEVEL": "WARNING",
        "MAILGATE_VERIFY__DNS_LOOKUPS": "false",
    }
    env.pop("MAILGATE_CONFIG", None)
    mailgate = str(Path(sys.executable).parent / "mailgate")
    t0 = time.perf_counter()
    proc = subprocess.Popen([mailgate, "serve"], env=env)
    try:
        greeting = first_byte(smtp, t0, proc, 120)
        ready = ready_after(http, t0, 120)
        idle = processes = 0
        if measure_idle:
            settle(proc.pid)
            idle, processes = tree_sum(proc.pid, "VmRSS")
        return greeting, ready, idle, processes
    finally:
        stop(proc)
        db.unlink()


def run(rounds: int, workdir: Path) -> Start:
    template = workdir / "template.db"
    migrate(f"sqlite:///{template}")
    result = Start([], [], [], 0, 0)
    # One warm-up of each, not counted: the first exec after a checkout reads the
    # files from disk, which says nothing about a restart.
    noop_once()
    mailgate_once(template, workdir, False)
    for i in range(rounds):
        last = i == rounds - 1
        result.noop.append(noop_once())
        greeting, ready, idle, processes = mailgate_once(template, workdir, last)
        result.mailgate.append(greeting)
        result.ready.append(ready)
        if last:
            result.idle_bytes, result.processes = idle, processes
    return result


def rows(rounds: int, workdir: Path) -> list[Row]:
    """The ``start`` part of bench/run.py's table."""
    (workdir / "start").mkdir()
    r = run(rounds, workdir / "start")
    greeting, noop = statistics.median(r.mailgate), statistics.median(r.noop)
    return [
        Row(
            f"start: exec → SMTP greeting, median of {rounds}",
            f"{greeting * 1000:.0f} ms = {r.ratio:.2f} × no-op aiosmtpd ({noop * 1000:.0f} ms)",
            "≤ 3 × no-op",
            *at_most(r.ratio, 3.0),
        ),
        Row(
            "start: exec → /readyz 200 (pipeline up)",
            f"median {statistics.median(r.ready) * 1000:.0f} ms",
        ),
        Row(
            "idle process tree after start",
            f"{r.idle_bytes / MB:.0f} MB in {r.processes} process(es)",
            "≤ 150 MB",
            *at_most(r.idle_bytes / MB, 150.0),
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    print(f"load average at start {load_average()}")
    workdir = Path(tempfile.mkdtemp(prefix="mailgate-start-"))
    try:
        r = run(args.rounds, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ms = [f"{s * 1000:.0f}" for s in r.mailgate]
    noop = [f"{s * 1000:.0f}" for s in r.noop]
    print(f"mailgate serve, exec → greeting (ms): {' '.join(ms)}")
    print(f"no-op aiosmtpd, exec → greeting (ms): {' '.join(noop)}")
    print(
        f"mailgate serve, exec → /readyz 200 (ms): {' '.join(f'{s * 1000:.0f}' for s in r.ready)}"
    )
    verdict = "met" if r.ratio <= 3 else "NOT met"
    print(
        f"median {statistics.median(r.mailgate) * 1000:.0f} ms vs "
        f"{statistics.median(r.noop) * 1000:.0f} ms: ratio {r.ratio:.2f} (target ≤ 3) {verdict}; "
        f"idle tree {r.idle_bytes / MB:.0f} MB in {r.processes} processes; "
        f"load average at end {load_average()}"
    )


if __name__ == "__main__":
    main()
