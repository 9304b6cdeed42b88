"""Several mailgate instances on one PostgreSQL: they share the work, one dies in the
middle, and still every message is processed exactly once."""

from __future__ import annotations

import smtplib
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailgate.store.models import Article, InboundMessage, Ticket
from tests.conftest import BACKENDS, make_runtime, make_settings
from tests.support import DaemonThread, make_mail, wait_until

# Several processes on one database is what PostgreSQL is for (SQLite: one process).
POSTGRES = [b for b in BACKENDS if b == "postgresql"]


@pytest.mark.parametrize("db_url", POSTGRES, indirect=True)
def test_three_instances_one_killed_nothing_lost_nothing_twice(db_url: str, tmp_path: Path) -> None:
    runtimes = [
        make_runtime(
            make_settings(
                db_url,
                tmp_path / f"i{n}",
                # A dead instance's claims come back after this many seconds.
                processing={"lease_seconds": 2, "sweep_seconds": 1},
                limits={"acks_per_recipient_per_day": 1000},
            )
        )
        for n in range(3)
    ]
    daemons = [DaemonThread(rt).__enter__() for rt in runtimes]
    per_instance = 40
    accepted = [0, 0, 0]  # 250s each client saw: what must end up as tickets
    halfway = threading.Event()

    def send(d: DaemonThread, n: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=5) as c:
                for i in range(per_instance):
                    sender = f"c{n}-{i}@customer.example"
                    c.sendmail(sender, ["support@helpdesk.example"], make_mail(sender=sender))
                    accepted[n] += 1
                    if n == 0 and accepted[0] == per_instance // 2:
                        halfway.set()
        except (smtplib.SMTPException, OSError):
            assert n == 0  # only the killed instance may drop its client

    clients = [threading.Thread(target=send, args=(d, n)) for n, d in enumerate(daemons)]
    try:
        for t in clients:
            t.start()
        assert halfway.wait(30)
        # Instance 0 dies mid-stream without draining: what it stored but had not
        # processed, or had claimed, is left for the others (claims come back after
        # the lease).
        victim = daemons.pop(0)
        victim.loop.call_soon_threadsafe(victim.loop.stop)
        victim.thread.join(10)
        for t in clients:
            t.join()
        expected = sum(accepted)
        assert accepted[1] == accepted[2] == per_instance
        rt = runtimes[1]

        def all_settled() -> bool:
            with rt.sessions() as s:
                open_rows = s.scalar(
                    select(func.count())
                    .select_from(InboundMessage)
                    .where(InboundMessage.status != "done")
                )
                return open_rows == 0

        wait_until(all_settled, timeout=60, what="every message processed by the survivors")
        with rt.sessions() as s:
            # The victim may have stored one more than its client saw answered.
            stored = s.scalar(select(func.count()).select_from(InboundMessage))
            tickets = s.scalar(select(func.count()).select_from(Ticket))
            inbound_articles = s.scalar(
                select(func.count()).select_from(Article).where(Article.direction == "in")
            )
            numbers = s.scalars(select(Ticket.number)).all()
        assert stored in (expected, expected + 1)
        assert tickets == inbound_articles == stored  # none lost, none processed twice
        assert sorted(numbers) == list(range(1, stored + 1))  # no gaps, no repeats
    finally:
        for d in daemons:
            d.__exit__(None, None, None)
        for r in runtimes:
            r.close()
