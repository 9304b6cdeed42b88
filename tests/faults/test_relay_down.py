"""Relay down: the outbox keeps every mail, backs off, and delivers each exactly once
when the relay returns; with the relay gone for good it gives up after
``outbound.lifetime_hours`` and says so.

Time is the injected clock: ten minutes of outage (full form: an hour) are walked in
15-second steps of ``outbox.flush``, against a port where nothing listens.  Then a real
SMTP sink starts on that port.  Separately the real daemon idles with the relay away,
and the CPU it burns while waiting is printed.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from mailgate.daemon.runtime import Runtime
from mailgate.replies import outbox
from mailgate.replies.render import Rendered
from mailgate.store.models import OutboxMessage
from tests.conftest import make_runtime, make_settings
from tests.faults.conftest import FULL, Figures
from tests.support import DaemonThread, FakeClock, free_port, start_sink

MAILS = 500 if FULL else 60
OUTAGE = timedelta(hours=1) if FULL else timedelta(minutes=10)
STEP = timedelta(seconds=15)


def relay_runtime(db_url: str, tmp_path: Path, port: int, clock: FakeClock | None) -> Runtime:
    settings = make_settings(
        db_url,
        tmp_path,
        outbound={"relay": f"127.0.0.1:{port}", "timeout": 5, "lifetime_hours": 24},
        # Many distinct recipients in a burst: the breaker is not what is tested here.
        limits={"breaker_threshold": 100_000},
    )
    return make_runtime(settings, clock)


def enqueue(rt: Runtime, n: int, tag: str) -> None:
    with rt.sessions.begin() as s:
        for i in range(n):
            mid = f"{tag}-{i}@helpdesk.example"
            raw = f"Message-ID: <{mid}>\r\nSubject: {tag} {i}\r\n\r\nhello\r\n".encode()
            outbox.enqueue(
                s,
                rt,
                kind="ack",
                ticket_id=None,
                mail_from="",
                rcpt_to=[f"{tag}{i}@customer.example"],
                rendered=Rendered(mid, raw),
            )


def statuses(rt: Runtime) -> dict[str, int]:
    with rt.sessions() as s:
        rows = s.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))
        return {status: int(n) for status, n in rows}


def test_relay_down_retries_then_delivers_each_mail_once(
    db_url: str, tmp_path: Path, clock: FakeClock, figures: Figures
) -> None:
    port = free_port()
    rt = relay_runtime(db_url, tmp_path, port, clock)
    try:
        enqueue(rt, MAILS, "down")
        attempts = 0
        outage_ends = clock() + OUTAGE
        while clock() < outage_ends:
            attempts += outbox.flush(rt, 1000)
            clock.advance(seconds=STEP.total_seconds())
        assert statuses(rt) == {"pending": MAILS}
        relay, controller, _ = start_sink(port)
        try:
            back_at = clock()
            while statuses(rt).get("pending"):
                outbox.flush(rt, 1000)
                clock.advance(seconds=STEP.total_seconds())
                assert clock() - back_at < timedelta(days=1), "never delivered"
            delivered_after = clock() - back_at
            # Another day of flushing must send nothing more.
            for _ in range(24):
                clock.advance(hours=1)
                outbox.flush(rt, 1000)
            relay.wait_for(MAILS)
            received = Counter(m.data.split(b"\r\n", 1)[0] for m in relay.messages)
        finally:
            controller.stop()
    finally:
        rt.close()
    duplicated = sum(n - 1 for n in received.values() if n > 1)
    figures["mails"] = MAILS
    figures["outage_min"] = OUTAGE.total_seconds() / 60
    figures["attempts_during_outage"] = attempts
    figures["attempts_per_mail"] = attempts / MAILS
    figures["delivered_s_after_recovery"] = delivered_after.total_seconds()
    figures["delivered"] = len(received)
    figures["duplicated"] = duplicated
    assert len(received) == MAILS
    assert duplicated == 0
    # Injected time, so no machine noise: every mail within 2 minutes of the return.
    assert delivered_after <= timedelta(minutes=2)


def test_relay_gone_for_good_gives_up_after_the_lifetime(
    db_url: str, tmp_path: Path, clock: FakeClock, figures: Figures
) -> None:
    rt = relay_runtime(db_url, tmp_path, free_port(), clock)
    try:
        enqueue(rt, 10, "gone")
        started = clock()
        while statuses(rt).get("pending"):
            outbox.flush(rt, 1000)
            clock.advance(minutes=10)
            assert clock() - started < timedelta(days=3), "never gave up"
        gave_up_after = clock() - started
        with rt.sessions() as s:
            attempts = sorted(s.scalars(select(OutboxMessage.attempts)))
        final = statuses(rt)
    finally:
        rt.close()
    figures["gave_up_after_h"] = gave_up_after.total_seconds() / 3600
    figures["attempts_each"] = attempts[0]
    assert final == {"failed": 10}
    # Not before the lifetime: 24 h configured.
    assert gave_up_after >= timedelta(hours=24)


def test_relay_down_daemon_waits_without_burning_cpu(
    db_url: str, tmp_path: Path, figures: Figures
) -> None:
    rt = relay_runtime(db_url, tmp_path, free_port(), None)
    try:
        enqueue(rt, MAILS, "idle")
        with DaemonThread(rt):
            wall0, cpu0 = time.monotonic(), time.process_time()
            time.sleep(10 if FULL else 3)
            wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        left = statuses(rt)
    finally:
        rt.close()
    figures["cpu_percent_while_waiting"] = 100 * cpu / wall
    # Nothing was lost while the relay was away: all still queued.
    assert left == {"pending": MAILS}
