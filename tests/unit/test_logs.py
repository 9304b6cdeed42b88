"""Log lines as admins expect them: one record per line in the configured format (text
or JSON), an ISO 8601 timestamp with its offset, the trace id and ticket number of the
message a line is about — also for the facts workers' records and mail-parser's."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from mailgate import tracing
from mailgate.config import LogSettings
from mailgate.daemon import logs
from mailgate.pipeline.facts import Evidence, FactsConfig, Job, PoolAnalyzer, analyze_job
from mailgate.verify.authn import DnsFunc
from tests.support import make_mail, wait_until

ISO_WITH_OFFSET = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"


@pytest.fixture
def configured() -> Iterator[None]:
    """The root logger as the daemon sets it up, restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    parser_level = logging.getLogger("mailparser").level
    yield
    root.handlers[:], level = saved
    root.setLevel(level)
    logging.getLogger("mailparser").setLevel(parser_level)


def _failing() -> None:
    try:
        raise ValueError("first line\nsecond line")
    except ValueError:
        logging.getLogger("mailgate.pipeline").exception("processing inbound id=17 failed")


@pytest.mark.usefixtures("configured")
def test_text_lines_are_single_records_with_offset_trace_and_ticket(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure(LogSettings(format="text", level="info"))
    with tracing.about(17):
        logging.getLogger("mailgate.replies.gates").warning("before the ticket is known")
        tracing.ticket_known(4)
        _failing()
    logging.getLogger("mailgate").info("about no message")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3  # the traceback stayed inside its record
    assert re.match(
        rf"ts={ISO_WITH_OFFSET} level=WARNING logger=mailgate.replies.gates trace=17 before",
        lines[0],
    )
    assert ' trace=17 ticket=4 processing inbound id=17 failed exc="Traceback' in lines[1]
    assert "ValueError: first line\\nsecond line" in lines[1]  # escaped, not broken
    assert "trace=" not in lines[2] and "ticket=" not in lines[2]


@pytest.mark.usefixtures("configured")
def test_json_lines_carry_trace_ticket_and_the_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure(LogSettings(format="json", level="info"))
    with tracing.about(17, ticket=4):
        _failing()
    [line] = capsys.readouterr().err.splitlines()
    entry = json.loads(line)
    assert re.fullmatch(ISO_WITH_OFFSET, entry["ts"])
    assert (entry["trace"], entry["ticket"]) == (17, 4)
    assert "ValueError: first line\nsecond line" in entry["exc"]


def no_dns(name: bytes, timeout: float = 5) -> bytes | None:
    return None


def noisy_job(
    job: Job, config: FactsConfig, dnsfunc: DnsFunc, now: datetime, budget: float
) -> Evidence:
    """A facts job that logs as mail-parser does, then analyses the message."""
    logging.getLogger("mailparser.utils").warning("Cannot flatten part with the declared charset")
    try:
        raise RuntimeError("inside\nthe worker")
    except RuntimeError:
        logging.getLogger("mailgate.pipeline.facts").exception("worker trouble")
    return analyze_job(job, config, dnsfunc, now, budget)


@pytest.mark.usefixtures("configured")
def test_worker_records_go_through_the_parents_formatter(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mailgate.config import Settings
    from mailgate.parse.bounds import ParseLimits

    logs.configure(LogSettings(format="json", level="info"))
    config = FactsConfig(
        limits=ParseLimits(),
        own_addresses=frozenset(),
        own_domains=frozenset(),
        trusted_authserv_ids=frozenset(),
        priority=Settings().priority,
    )
    analyzer = PoolAnalyzer(workers=1, budget_seconds=30, memory_mb=2048, job=noisy_job)
    try:
        found = analyzer.run([Job(41, make_mail(), None)], config, no_dns, datetime.now(UTC))
        assert isinstance(found[41], Evidence)
        # The records travel beside the result, through a queue of their own.
        entries: list[dict[str, object]] = []

        def both_arrived() -> bool:
            entries.extend(json.loads(line) for line in capsys.readouterr().err.splitlines())
            return {"mailparser.utils", "mailgate.pipeline.facts"} <= {
                str(e["logger"]) for e in entries
            }

        wait_until(both_arrived, what="the worker's log records")
    finally:
        analyzer.close()
    by_logger = {e["logger"]: e for e in entries}
    parser = by_logger["mailparser.utils"]
    assert (parser["level"], parser["trace"]) == ("warning", 41)
    worker = by_logger["mailgate.pipeline.facts"]
    assert worker["trace"] == 41 and "RuntimeError: inside\nthe worker" in worker["exc"]
