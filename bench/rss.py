"""Peak memory of ``mailgate serve`` receiving one message with a 25 MB attachment.

The message (a short text part and 25 000 000 random bytes as a base64 attachment,
about 34 MB on the wire) is sent over SMTP to a daemon on a fresh SQLite database,
stored, processed into a ticket and acknowledged through the relay sink.  The SMTP
size limit is raised to 48 MiB for this run (the default, 25 MiB, refuses it).

Memory is read from /proc for the daemon's whole process tree (the daemon, the
forkserver, the facts workers, multiprocessing's resource tracker):

  hwm     — the sum of each process's VmHWM (its own peak resident set) at the end: an
            upper bound on the tree's peak, since the peaks need not coincide;
  sampled — the largest sum of VmRSS seen while sampling the tree every 10 ms;
  idle    — the tree's VmRSS before the message is sent.

The target is "peak ≤ 4 × the message + 100 MB", checked against ``hwm``.
"""

from __future__ import annotations

import os
import smtplib
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from run import Mailgate

MB = 1_000_000


@dataclass
class Rss:
    message_bytes: int
    hwm: int  # bytes
    sampled: int
    idle: int
    processes: int
    seconds: float  # 250 → acknowledgement received
    by_process: list[tuple[str, int, int]]  # (role, idle VmRSS, VmHWM at the end), bytes


def big_message(attachment_bytes: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Jan Kowalski <jan@customer.example>"
    msg["To"] = "support@helpdesk.example"
    msg["Subject"] = "Zrzut bazy danych do analizy"
    msg["Message-ID"] = "<rss-bench@customer.example>"
    msg.set_content("W załączniku zrzut bazy, o który prosiliście.\n")
    msg.add_attachment(
        os.urandom(attachment_bytes),
        maintype="application",
        subtype="octet-stream",
        filename="dump.sql.gz",
    )
    raw = msg.as_bytes()
    assert len(raw) > attachment_bytes * 4 // 3, "the attachment must be base64"
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except OSError:
        return 0


def tree(root: int) -> list[int]:
    """``root`` and every descendant, from the parent ids in /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            children.setdefault(parent(int(entry)), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def role(pid: int, root: int) -> str:
    """What a process of the daemon's tree is, from its command line."""
    if pid == root:
        return "daemon"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "gone"
    if parent(pid) != root:
        return "facts worker"  # forked by the forkserver (whose command line it shares)
    if b"forkserver" in cmdline:
        return "forkserver"
    if b"resource_tracker" in cmdline:
        return "resource tracker"
    return "facts worker"


def tree_sum(root: int, field: str) -> tuple[int, int]:
    pids = tree(root)
    return sum(status_kb(pid, field) for pid in pids) * 1024, len(pids)


def settle(pid: int, timeout: float = 15) -> None:
    """Wait until the daemon's process tree stops growing (the facts workers start
    after the listener) and their start-up memory is in the idle figure."""
    deadline = time.monotonic() + timeout
    seen, stable_since = tree(pid), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - stable_since < 1.0:
        time.sleep(0.1)
        now = tree(pid)
        if now != seen:
            seen, stable_since = now, time.monotonic()


def run(workdir: Path, attachment_bytes: int = 25 * MB) -> Rss:
    raw = big_message(attachment_bytes)
    mg = Mailgate(workdir, None)
    mg.env["MAILGATE_SMTP__MAX_MESSAGE_SIZE"] = str(48 * 1024 * 1024)
    with mg:
        assert mg.proc is not None
        pid = mg.proc.pid
        settle(pid)
        idle, _ = tree_sum(pid, "VmRSS")
        idle_of = {p: status_kb(p, "VmRSS") * 1024 for p in tree(pid)}
        peak = idle
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, tree_sum(pid, "VmRSS")[0])
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            with smtplib.SMTP("127.0.0.1", mg.smtp_port, timeout=120) as client:
                client.sendmail("jan@customer.example", ["support@helpdesk.example"], raw)
            t0 = time.perf_counter()
            mg.wait_settled(1, timeout=300)
            deadline = time.monotonic() + 60
            while mg.sink.count < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            seconds = time.perf_counter() - t0
        finally:
            stop.set()
            sampler.join()
        if mg.count("SELECT count(*) FROM ticket") != 1 or mg.sink.count != 1:
            raise RuntimeError("the 25 MB message did not become a ticket with an ack")
        hwm, processes = tree_sum(pid, "VmHWM")
        by_process = [
            (role(p, pid), idle_of.get(p, 0), status_kb(p, "VmHWM") * 1024) for p in tree(pid)
        ]
    return Rss(len(raw), hwm, peak, idle, processes, seconds, by_process)
