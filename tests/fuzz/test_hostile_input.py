"""Property: whatever bytes arrive, mailgate neither crashes nor hangs, and every
message is either processed or quarantined with a reason.

Two stages are exercised.  ``facts.analyze`` (parse, classify, authenticate, redact,
identify) over the full example budget: it must return evidence or raise
``PermanentError`` carrying a reason code — any other exception is a crash — and it
must finish inside the daemon's default CPU budget (an alarm turns a hang into a
failure).  Then, for a twentieth of the budget, the whole pipeline on a real SQLite
database: ``accept`` then ``run_pending``; the row must end ``done`` or
``quarantined`` with a reason, never stay pending or vanish.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from mailgate import config
from mailgate.daemon.runtime import Runtime
from mailgate.errors import PermanentError
from mailgate.ingest.accept import Envelope, accept
from mailgate.pipeline.batches import run_pending
from mailgate.pipeline.claims import facts_config
from mailgate.pipeline.facts import analyze
from mailgate.store.db import make_engine
from mailgate.store.migrate import upgrade
from mailgate.store.models import InboundMessage
from tests.conftest import make_runtime, make_settings
from tests.fuzz.conftest import EXAMPLES, count
from tests.fuzz.mutate import hostile_mail
from tests.support import FakeDns

BUDGET_SECONDS = 10  # processing.parse_seconds' default
ENV = Envelope("jan@customer.example", ("support@helpdesk.example",))
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # the alarm below is the hang check; wall time is not asserted
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Hang(Exception):
    pass


def _alarm(_signum: int, _frame: Any) -> None:
    raise Hang(f"over the {BUDGET_SECONDS} s CPU budget")


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    tmp = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{tmp}/mailgate.db"
    engine = make_engine(config.DatabaseSettings(url=url))
    upgrade(engine)
    engine.dispose()
    # Many senders, no limits worth hitting: the outbox is not under test here.
    runtime = make_runtime(make_settings(url, Path(tmp), limits={"breaker_threshold": 10_000_000}))
    yield runtime
    runtime.close()


def test_analyze_never_crashes_or_hangs_on_hostile_mail(rt: Runtime) -> None:
    cfg = facts_config(rt)
    dns = FakeDns()

    @FUZZ
    @given(raw=hostile_mail)
    def check(raw: bytes) -> None:
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, BUDGET_SECONDS)
        try:
            analyze(raw, "jan@customer.example", cfg, dns, NOW)
        except PermanentError as exc:
            assert exc.reason, "quarantine without a reason code"
            count("analyze", f"quarantine:{exc.reason}")
        else:
            count("analyze", "evidence")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    check()


def test_pipeline_processes_or_quarantines_every_hostile_mail(rt: Runtime) -> None:
    @settings(FUZZ, max_examples=max(EXAMPLES // 20, 20))
    @given(raw=hostile_mail)
    def check(raw: bytes) -> None:
        if not raw:
            return  # refused before storing (554), never stored: nothing to follow
        row_id = accept(rt.sessions, raw, ENV, "smtp").inbound_id
        run_pending(rt, 5)
        with rt.sessions() as s:
            row = s.get_one(InboundMessage, row_id)
            status, reason = row.status, row.reason
        assert status in ("done", "quarantined"), status
        if status == "quarantined":
            assert reason, "quarantined without a reason"
            count("pipeline", f"quarantine:{reason}")
        else:
            count("pipeline", f"done:{row.verdict}")

    check()
