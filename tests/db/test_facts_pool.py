"""The facts stage in worker processes: same results as in-process, refusals carried
back with their reason, and a budget that kills the workers and quarantines the
message that keeps exceeding it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from mailgate.ingest.accept import Envelope, accept
from mailgate.pipeline import batches
from mailgate.pipeline.facts import PoolAnalyzer
from mailgate.store.models import InboundMessage, Ticket
from tests import hostile, slowjobs
from tests.conftest import make_runtime, make_settings
from tests.support import FakeClock, make_mail

ENV = Envelope("jan@customer.example", ("support@helpdesk.example",))


def test_worker_processes_give_the_same_outcomes(db_url: str, tmp_path: Path) -> None:
    rt = make_runtime(make_settings(db_url, tmp_path, processing={"parse_workers": 2}))
    assert isinstance(rt.analyzer, PoolAnalyzer)
    samples = hostile.samples()
    try:
        for name in ("no-message-id", "to-10000-addresses", "deep-nesting", "undeclared-koi8r"):
            accept(rt.sessions, samples[name], ENV, "smtp")
        accept(rt.sessions, make_mail(subject="Awaria serwera"), ENV, "smtp")
        while batches.run_pending(rt):
            pass
        with rt.sessions() as s:
            rows = {r.id: (r.status, r.reason) for r in s.scalars(select(InboundMessage))}
            subjects = set(s.scalars(select(Ticket.subject)))
        assert rows[2] == ("quarantined", "header-too-large")  # reason survives pickling
        assert rows[3] == ("quarantined", "mime-too-deep")
        assert [rows[i][0] for i in (1, 4, 5)] == ["done"] * 3
        assert "Awaria serwera" in subjects
    finally:
        rt.close()


def test_budget_kills_workers_then_quarantines(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(
        db_url, tmp_path, processing={"max_attempts": 2, "retry_base_seconds": 1}
    )
    rt = make_runtime(settings, clock)
    # A budget no message can meet: every attempt overruns.
    rt.analyzer = PoolAnalyzer(workers=1, budget_seconds=0.0001, memory_mb=2048)
    try:
        row_id = accept(rt.sessions, make_mail(), ENV, "smtp", clock=clock).inbound_id
        assert batches.run_pending(rt) == 1
        with rt.sessions() as s:
            row = s.get_one(InboundMessage, row_id)
            assert (row.status, row.attempts) == ("retry", 1)
            assert "BudgetExceeded" in (row.last_error or "")
        clock.advance(seconds=1)
        assert batches.run_pending(rt) == 1
        with rt.sessions() as s:
            row = s.get_one(InboundMessage, row_id)
            assert (row.status, row.reason) == ("quarantined", "parse-budget")
        # After the operator's replay, a sane budget processes it.
        rt.analyzer.close()
        rt.analyzer = PoolAnalyzer(workers=1, budget_seconds=30, memory_mb=2048)
        with rt.sessions.begin() as s:
            row = s.get_one(InboundMessage, row_id)
            row.status, row.attempts, row.next_attempt_at = "received", 0, clock()
        assert batches.run_pending(rt) == 1
        with rt.sessions() as s:
            assert s.get_one(InboundMessage, row_id).status == "done"
    finally:
        rt.close()


# The analyzer is what is tested; one backend is enough.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_one_stuck_message_is_quarantined_for_the_budget_and_spares_its_batch(
    db_url: str, tmp_path: Path
) -> None:
    """A worker stuck where no signal reaches it (native code: nh3 on a nesting bomb,
    before ``sanitize_html`` refused those) is ended by the batch deadline, and the
    message is charged with the budget (reason ``parse-budget``), however large the
    batch.  The other messages of the batch, on the other worker, are processed."""
    rt = make_runtime(make_settings(db_url, tmp_path, processing={"max_attempts": 1}))
    rt.analyzer = PoolAnalyzer(
        workers=2, budget_seconds=1, memory_mb=2048, job=slowjobs.stuck_in_native_code
    )
    try:
        stuck = make_mail(headers={"X-Test-Behaviour": "stuck"})
        assert slowjobs.STUCK in stuck
        ids = [accept(rt.sessions, stuck, ENV, "smtp").inbound_id]
        ids += [accept(rt.sessions, make_mail(), ENV, "smtp").inbound_id for _ in range(19)]
        assert batches.run_pending(rt) == 20
        with rt.sessions() as s:
            rows = [s.get_one(InboundMessage, i) for i in ids]
        assert (rows[0].status, rows[0].reason) == ("quarantined", "parse-budget")
        assert [r.status for r in rows[1:]] == ["done"] * 19
    finally:
        rt.close()
