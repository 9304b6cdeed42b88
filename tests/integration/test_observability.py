"""What an admin watches: /metrics in Prometheus text format, /readyz, the trace id
that ties the log lines of one message together, and ``mailgate check``."""

from __future__ import annotations

import logging
import smtplib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from mailgate import cli
from mailgate.daemon.runtime import Runtime
from tests.conftest import make_runtime, make_settings
from tests.support import DaemonThread, FakeClock, RelaySink, free_port, make_mail, wait_until

SUPPORT = "support@helpdesk.example"


@pytest.fixture
def http_rt(db_url: str, tmp_path: Path, sink: RelaySink, clock: FakeClock) -> Iterator[Runtime]:
    settings = make_settings(
        db_url,
        tmp_path,
        http={"listen": "127.0.0.1:0"},
        outbound={"relay": f"127.0.0.1:{sink.port}"},
    )
    rt = make_runtime(settings, clock)
    yield rt
    rt.close()


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(port: int) -> dict[str, float]:
    status, body = get(port, "/metrics")
    assert status == 200
    values = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            values[f"{s.name}{{{labels}}}"] = s.value
    return values


def test_metrics_follow_a_message_from_listener_to_acknowledgement(
    http_rt: Runtime, sink: RelaySink
) -> None:
    two_froms = make_mail().replace(b"From: ", b"From: a@b.example\r\nFrom: ", 1)
    with DaemonThread(http_rt) as d:
        before = scrape(d.port("http"))
        assert before["mailgate_ingest_messages_total{listener=smtp,result=accepted}"] == 0
        assert before["mailgate_rate_limit_drops_total{}"] == 0
        assert before["mailgate_sla_breaches_total{}"] == 0
        assert before["mailgate_store_up{}"] == 1
        with smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=10) as c:
            c.ehlo()
            c.mail("jan@customer.example")
            assert c.rcpt("nobody@helpdesk.example")[0] == 550
            c.rset()
            c.sendmail("jan@customer.example", [SUPPORT], make_mail(subject="DNS"))
            c.sendmail("x@customer.example", [SUPPORT], two_froms)
        sink.wait_for(1)

        def settled() -> dict[str, float] | None:
            now = scrape(d.port("http"))
            done = now.get("mailgate_outbox_attempts_total{kind=ack,result=sent}")
            quarantined = now.get("mailgate_quarantine_messages{reason=no-sender-identity}")
            return now if done and quarantined else None

        after = wait_until(settled, what="the acknowledgement and the quarantine to show")
    assert after["mailgate_ingest_messages_total{listener=smtp,result=accepted}"] == 2
    assert after["mailgate_ingest_messages_total{listener=smtp,result=rejected}"] == 1
    assert after["mailgate_ingest_messages_total{listener=lmtp,result=tempfailed}"] == 0
    assert after["mailgate_processed_messages_total{verdict=OpenTicket}"] == 1
    assert after["mailgate_processed_messages_total{verdict=Quarantine}"] == 1
    assert after["mailgate_outbox_attempts_total{kind=ack,result=sent}"] == 1
    assert after["mailgate_receipt_to_ack_seconds_count{}"] == 1
    assert after["mailgate_outbox_pending_messages{}"] == 0
    assert after["mailgate_outbox_oldest_pending_age_seconds{}"] == 0
    assert after["mailgate_inbound_pending_messages{}"] == 0
    assert after["mailgate_listeners_up{}"] == 2


def test_two_runtimes_in_one_process_have_separate_registries(db_url: str, tmp_path: Path) -> None:
    first = make_runtime(make_settings(db_url, tmp_path))
    second = make_runtime(make_settings(db_url, tmp_path))
    try:
        first.metrics.ingest.labels("smtp", "accepted").inc()
        assert b'result="accepted"} 1.0' in first.metrics.render()
        assert b'listener="smtp",result="accepted"} 0.0' in second.metrics.render()
    finally:
        first.close()
        second.close()


def test_readyz_fails_when_due_mail_is_not_being_sent(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    dead_relay = free_port()  # nothing listens: every send is a temporary failure
    settings = make_settings(
        db_url,
        tmp_path,
        http={"listen": "127.0.0.1:0"},
        outbound={"relay": f"127.0.0.1:{dead_relay}", "timeout": 2},
        daemon={"outbox_stuck_seconds": 600},
    )
    rt = make_runtime(settings, clock)
    try:
        with DaemonThread(rt) as d:
            with smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=10) as c:
                c.sendmail("jan@customer.example", [SUPPORT], make_mail())
            port = d.port("http")
            wait_until(
                lambda: scrape(port).get("mailgate_outbox_attempts_total{kind=ack,result=retry}"),
                what="the first failed send",
            )
            # Backing off from a refusing relay is not "stuck" ...
            assert get(port, "/readyz") == (200, "ready\n")
            # ... but mail that has been due for longer than the limit is.
            clock.advance(hours=2)
            status, body = get(port, "/readyz")
            assert status == 503 and "outbox: 1 messages overdue" in body
            assert scrape(port)["mailgate_outbox_oldest_pending_age_seconds{}"] >= 7200
    finally:
        rt.close()


def test_one_trace_id_from_receipt_to_acknowledgement(
    http_rt: Runtime, sink: RelaySink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with DaemonThread(http_rt) as d:
        with smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=10) as c:
            c.sendmail("jan@customer.example", [SUPPORT], make_mail())
        sink.wait_for(1)
        wait_until(lambda: any("sent to" in r.getMessage() for r in caplog.records))
        # The daemon logs from its own threads; caplog's list is read once they are done.
    traced = [r for r in caplog.records if getattr(r, "trace", None) is not None]
    assert {r.trace for r in traced} == {1}  # type: ignore[attr-defined]
    stages = [r.name for r in traced]
    assert stages == ["mailgate.ingest.smtp", "mailgate.pipeline", "mailgate.replies.outbox"]


def run_check(config: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli.main, ["--config", str(config), "check"], env={"MAILGATE_CONFIG": None}
    )
    return result.exit_code, result.output


def test_check_passes_on_a_working_setup(db_url: str, tmp_path: Path, sink: RelaySink) -> None:
    config = tmp_path / "ok.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[outbound]\nrelay = "127.0.0.1:{sink.port}"\ntls = "insecure"\n'
    )
    code, output = run_check(config)
    assert code == 0, output
    lines = [line for line in output.splitlines() if line.startswith(("ok ", "FAIL "))]
    assert [line.split()[:2] for line in lines] == [
        ["ok", "config"],
        ["ok", "database"],
        ["ok", "templates"],
        ["ok", "outbound"],
    ]
    assert f"relay 127.0.0.1:{sink.port} accepts us" in output


def test_check_names_every_problem_and_exits_1(tmp_path: Path) -> None:
    empty_db = f"sqlite:///{tmp_path}/never-migrated.db"
    templates = tmp_path / "templates"
    (templates / "ack" / "en").mkdir(parents=True)
    (templates / "ack" / "en" / "subject.txt.j2").write_text("{{ no_such_variable }}\n")
    (templates / "ack" / "en" / "body.txt.j2").write_text("body\n")
    config = tmp_path / "bad.toml"
    config.write_text(
        f'[database]\nurl = "{empty_db}"\n[outbound]\nrelay = "127.0.0.1:{free_port()}"\n'
        f'timeout = 2\n[templates]\ndirectory = "{templates}"\n'
    )
    code, output = run_check(config)
    assert code == 1
    fails = {line.split()[1]: line for line in output.splitlines() if line.startswith("FAIL")}
    assert set(fails) == {"database", "templates", "outbound"}
    assert "mailgate db upgrade" in fails["database"]
    assert "no_such_variable" in fails["templates"]
    assert "unreachable" in fails["outbound"]


def test_check_with_a_broken_config_lists_the_problems(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text('[smtp]\nlisten = "nowhere"\n')
    code, output = run_check(config)
    assert code == 78
    assert "smtp.listen" in output


def test_counters_have_no_created_series() -> None:
    from mailgate.daemon.metrics import Metrics

    metrics = Metrics()
    metrics.processed.labels("OpenTicket").inc()
    text = metrics.render().decode()
    assert "mailgate_processed_messages_total" in text
    assert "_created" not in text
