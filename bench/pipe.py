"""The pipe delivery beside the stdlib floor: one process per message, as an MTA runs it.

With ``mailgate serve`` running on a fresh SQLite database (its ``[lmtp] socket`` on),
three ways of storing one message each, alternated round by round so that all three
meet the same machine (the order rotates every round):

  pipe   — ``.venv/bin/mailgate --config C ingest --from S --to support@…`` with the
           message on stdin: the console script an MTA's pipe transport runs, handing
           the message to the daemon over the socket (``mailgate.ingest.deliver``);
  floor  — ``python bench/pipe_floor.py`` with the message on stdin: parse with the
           standard ``email`` package, INSERT into SQLite, COMMIT (WAL, synchronous=FULL);
  direct — the same ``mailgate ingest`` with ``MAILGATE_LMTP__SOCKET=`` (no socket): the
           command stores the message itself, what every pipe delivery cost before.

Wall time of each process from spawn to exit, the median and p90; the CPU time of
each (user + system, from the child's rusage).  Every process must exit 0 and every
message must be stored by the path it took (``source`` lmtp for the pipe, pipe for
direct); the bench fails otherwise.  One untimed warm-up round comes first.

The processes run as under an MTA, which starts them with an environment of its own:
no ``MAILGATE_*`` variables, and bytecode cached — ``PYTHONDONTWRITEBYTECODE`` (set on
some development machines) is dropped and the cache kept under the work directory
(``PYTHONPYCACHEPREFIX``), so neither side compiles its modules anew each time.
"""

from __future__ import annotations

import os
import resource
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from run import migrate, percentile

ROOT = Path(__file__).resolve().parents[1]
TO = "support@helpdesk.example"
FROM = "customer@customer.example"


@dataclass
class Timings:
    wall: list[float]
    cpu: list[float]

    @property
    def p50_ms(self) -> float:
        return percentile(self.wall, 50) * 1000

    @property
    def p90_ms(self) -> float:
        return percentile(self.wall, 90) * 1000

    @property
    def cpu_ms(self) -> float:
        return percentile(self.cpu, 50) * 1000

    def describe(self) -> str:
        return f"p50 {self.p50_ms:.0f} ms, p90 {self.p90_ms:.0f} ms (CPU p50 {self.cpu_ms:.0f} ms)"


@dataclass
class PipeBench:
    rounds: int
    pipe: Timings
    floor: Timings
    direct: Timings
    load: str  # load average while it ran


def write_config(workdir: Path) -> tuple[Path, Path]:
    """The daemon's config: SQLite in ``workdir``, LMTP on a Unix socket, no DNS."""
    sock = workdir / "lmtp.sock"
    config = workdir / "mailgate.toml"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        smtp_port = s.getsockname()[1]
    config.write_text(
        f'[database]\nurl = "sqlite:///{workdir}/mailgate.db"\n'
        f'[smtp]\nlisten = "127.0.0.1:{smtp_port}"\n'
        f'[lmtp]\nsocket = "{sock}"\n'
        '[http]\nlisten = ""\n'
        f'[outbound]\nmaildir = "{workdir}/sent"\n'
        "[verify]\ndns_lookups = false\n"
        '[log]\nlevel = "WARNING"\n'
    )
    return config, sock


def wait_socket(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mailgate serve exited with {proc.returncode}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1)
                s.connect(str(path))
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nobody listens on {path}")


def timed(command: list[str], raw: bytes, env: dict[str, str]) -> tuple[float, float]:
    """Run one process with ``raw`` on stdin; (wall seconds, CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(command, input=raw, capture_output=True, env=env, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{command[:2]} exited {done.returncode}: {done.stderr[-500:]!r}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def stored_by_source(db: Path) -> dict[str, int]:
    with sqlite3.connect(db, timeout=30) as conn:
        return dict(
            conn.execute("SELECT source, count(*) FROM inbound_message GROUP BY source").fetchall()
        )


def run(raws: list[bytes], workdir: Path, rounds: int) -> PipeBench:
    """``rounds`` messages through each of the three, alternating; see the docstring."""
    config, sock = write_config(workdir)
    db = workdir / "mailgate.db"
    floor_db = workdir / "floor.db"
    migrate(f"sqlite:///{db}")
    mailgate = str(Path(sys.executable).parent / "mailgate")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MAILGATE_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    commands = {
        "pipe": ([mailgate, "--config", str(config), "ingest", "--from", FROM, "--to", TO], env),
        "floor": ([sys.executable, str(ROOT / "bench/pipe_floor.py"), str(floor_db)], env),
        "direct": (
            [mailgate, "--config", str(config), "ingest", "--from", FROM, "--to", TO],
            {**env, "MAILGATE_LMTP__SOCKET": ""},
        ),
    }
    names = list(commands)
    results = {name: Timings([], []) for name in names}
    serve = subprocess.Popen([mailgate, "--config", str(config), "serve"], env=env)
    try:
        wait_socket(sock, serve)
        # Messages as an MTA's pipe hands them over: LF line ends.
        lf = [raw.replace(b"\r\n", b"\n") for raw in raws]
        for name in names:  # warm-up: page cache, the first WAL checkpoint
            timed(commands[name][0], lf[0], commands[name][1])
        for i in range(rounds):
            raw = lf[i % len(lf)]
            for name in names[i % 3 :] + names[: i % 3]:
                wall, cpu = timed(commands[name][0], raw, commands[name][1])
                results[name].wall.append(wall)
                results[name].cpu.append(cpu)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    finally:
        serve.terminate()
        serve.wait(60)
    counts = stored_by_source(db)
    expected = {"lmtp": rounds + 1, "pipe": rounds + 1}
    if counts != expected:
        raise RuntimeError(f"stored by source {counts}, expected {expected}")
    return PipeBench(rounds, results["pipe"], results["floor"], results["direct"], load)
