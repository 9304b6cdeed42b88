"""Automatic mail is limited: per recipient and day, and by a global circuit breaker;
operator mail is not.  Includes two mailgate instances whose helpdesk addresses write
to each other through real SMTP relay sinks."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from mailgate import cli
from mailgate.config import DatabaseSettings
from mailgate.daemon.runtime import Runtime
from mailgate.ingest.accept import Envelope, accept
from mailgate.pipeline import batches
from mailgate.replies import outbox
from mailgate.replies.render import Rendered
from mailgate.store.db import make_engine
from mailgate.store.migrate import upgrade
from mailgate.store.models import Event, OutboxMessage, Ticket
from tests.conftest import make_runtime, make_settings
from tests.db.test_pipeline import deliver
from tests.support import FakeClock, RelaySink, make_mail, start_sink


def rows(rt: Runtime) -> list[OutboxMessage]:
    with rt.sessions() as s:
        return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def limited_runtime(db_url: str, tmp_path: Path, clock: FakeClock, **limits: int) -> Runtime:
    return make_runtime(make_settings(db_url, tmp_path, limits=dict(limits)), clock)


def test_at_most_five_automatic_mails_per_recipient_and_day(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    rt = limited_runtime(db_url, tmp_path, clock)
    try:
        for i in range(7):
            deliver(rt, make_mail(subject=f"problem {i}", message_id=f"<p{i}@customer.example>"))
            clock.advance(hours=1)
        statuses = [(r.status, r.reason) for r in rows(rt)]
        assert statuses == [("pending", None)] * 5 + [("suppressed", "recipient-limit")] * 2
        assert rt.metrics.rate_limit_drops._value.get() == 2  # counted, once committed
        with rt.sessions() as s:
            held = s.scalars(select(Event).where(Event.kind == "suppressed")).all()
            assert [e.reason for e in held] == ["recipient-limit"] * 2
            assert all(e.ticket_id is not None for e in held)
        # Every ticket was still opened: only the acknowledgement is held back.
        with rt.sessions() as s:
            assert s.scalar(select(func.count()).select_from(Ticket)) == 7
        # Another customer is not affected, and 24 h after the first ack jan is heard again.
        deliver(rt, make_mail(sender="eva@customer.example", message_id="<e1@customer.example>"))
        assert rows(rt)[-1].status == "pending"
        clock.advance(hours=18)
        deliver(rt, make_mail(subject="later", message_id="<p9@customer.example>"))
        assert rows(rt)[-1].status == "pending"
    finally:
        rt.close()


def test_breaker_stops_all_automatic_mail_and_alerts(
    db_url: str, tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    rt = limited_runtime(
        db_url,
        tmp_path,
        clock,
        breaker_threshold=3,
        breaker_window_seconds=600,
        breaker_cooldown_seconds=1800,
    )
    try:
        with caplog.at_level(logging.ERROR, logger="mailgate.replies.gates"):
            for i in range(5):
                deliver(rt, make_mail(sender=f"c{i}@customer.example", message_id=f"<b{i}@x>"))
        assert [(r.status, r.reason) for r in rows(rt)] == [("pending", None)] * 3 + [
            ("suppressed", "circuit-breaker")
        ] * 2
        alerts = [r for r in caplog.records if "circuit breaker open" in r.getMessage()]
        assert len(alerts) == 1 and alerts[0].levelno == logging.ERROR
        with rt.sessions() as s:
            [opened] = s.scalars(select(Event).where(Event.kind == "breaker-open")).all()
            assert "3 automatic mails" in opened.detail
        # Mail queued before the breaker opened is held at send time as well.
        assert outbox.flush(rt) == 3
        assert {(r.status, r.reason) for r in rows(rt)} == {("suppressed", "circuit-breaker")}
        # After the cool-down, automatic mail flows again.
        clock.advance(seconds=1801)
        deliver(rt, make_mail(sender="late@customer.example", message_id="<late@x>"))
        assert rows(rt)[-1].status == "pending"
    finally:
        rt.close()


def test_operator_mail_is_never_limited_and_retry_releases_held_mail(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    rt = limited_runtime(db_url, tmp_path, clock, acks_per_recipient_per_day=1, breaker_threshold=2)
    try:
        with rt.sessions.begin() as s:
            for i in range(4):
                raw = f"From: a@helpdesk.example\r\nSubject: {i}\r\n\r\nx\r\n".encode()
                outbox.enqueue(
                    s,
                    rt,
                    kind="reply",
                    ticket_id=None,
                    rcpt_to=["jan@customer.example"],
                    rendered=Rendered(f"r{i}@helpdesk.example", raw),
                    mail_from="support@helpdesk.example",
                    automatic=False,
                )
            for i in range(3):
                raw = f"From: a@helpdesk.example\r\nSubject: a{i}\r\n\r\nx\r\n".encode()
                outbox.enqueue(
                    s,
                    rt,
                    kind="ack",
                    ticket_id=None,
                    rcpt_to=[f"x{i}@customer.example"],
                    rendered=Rendered(f"a{i}@helpdesk.example", raw),
                )
        # Four replies to one address, past a limit of one: a person wrote them.
        assert [r.status for r in rows(rt)] == ["pending"] * 6 + ["suppressed"]
        held = rows(rt)[-1]
        config_file = tmp_path / "cli.toml"
        config_file.write_text(f'[database]\nurl = "{db_url}"\n[limits]\nbreaker_threshold = 2\n')
        runner = CliRunner()
        listing = runner.invoke(cli.main, ["--config", str(config_file), "outbox", "list"])
        assert listing.exit_code == 0 and "circuit-breaker" in listing.output
        result = runner.invoke(
            cli.main, ["--config", str(config_file), "outbox", "retry", str(held.id)]
        )
        assert result.exit_code == 0 and "1 outgoing mail(s) queued again" in result.output
        with rt.sessions.begin() as s:  # the CLI stamped the real time, not the fake clock
            s.get_one(OutboxMessage, held.id).next_attempt_at = clock()
        assert outbox.flush(rt) == 7
        # Operator mail and the released row pass the open breaker; queued acks do not.
        assert [(r.kind, r.status) for r in rows(rt)] == [("reply", "sent")] * 4 + [
            ("ack", "suppressed"),
            ("ack", "suppressed"),
            ("ack", "sent"),
        ]
        dropped = runner.invoke(
            cli.main, ["--config", str(config_file), "outbox", "drop", str(held.id)]
        )
        # Sent mail cannot be dropped: the command says so and fails (issue 16).
        assert dropped.exit_code == 1
        assert f"nothing dropped: outgoing mail {held.id} is sent" in dropped.output
    finally:
        rt.close()


def test_drop_keeps_the_row_and_says_why(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    rt = limited_runtime(db_url, tmp_path, clock)
    try:
        deliver(rt, make_mail())
        [row] = rows(rt)
        config_file = tmp_path / "cli.toml"
        config_file.write_text(f'[database]\nurl = "{db_url}"\n')
        result = CliRunner().invoke(
            cli.main, ["--config", str(config_file), "outbox", "drop", str(row.id)]
        )
        assert result.exit_code == 0, result.output
        [row] = rows(rt)
        assert (row.status, row.reason) == ("dropped", "dropped-by-operator")
        assert outbox.flush(rt) == 0
        with rt.sessions() as s:
            assert s.scalars(select(Event.kind)).all() == ["dropped"]
    finally:
        rt.close()


# --------------------------------------------------------------------------- two gateways


@dataclass
class Gateway:
    rt: Runtime
    sink: RelaySink
    stop: Any
    address: str
    taken: int = 0


@pytest.fixture
def gateways(
    tmp_path: Path, clock: FakeClock, request: pytest.FixtureRequest
) -> Iterator[tuple[Gateway, Gateway]]:
    """Two mailgate instances, each with its own database and relay sink."""
    limits = getattr(request, "param", {})
    made = []
    for name in ("a", "b"):
        url = f"sqlite:///{tmp_path}/{name}.db"
        engine = make_engine(DatabaseSettings(url=url))
        upgrade(engine)
        engine.dispose()
        sink, controller, port = start_sink()
        settings = make_settings(
            url,
            tmp_path / name,
            outbound={"relay": f"127.0.0.1:{port}"},
            helpdesk={
                "name": f"Helpdesk {name.upper()}",
                "subject_tag": f"[{name.upper()}#{{number}}]",
                "queues": {f"support@{name}.example": "technical"},
            },
            limits=limits,
        )
        made.append(
            Gateway(make_runtime(settings, clock), sink, controller.stop, f"support@{name}.example")
        )
    yield made[0], made[1]
    for g in made:
        g.rt.close()
        g.stop()


# A peer that mangles what it forwards, as broken gateways and "smart" forwarders do:
# it drops every loop guard RFC 3834 gives us and resends from the From address.
LOOP_GUARDS = (
    "Auto-Submitted",
    "X-Auto-Response-Suppress",
    "Precedence",
    "X-Loop",
    "In-Reply-To",
    "References",
)


def exchange(a: Gateway, b: Gateway, clock: FakeClock, mangle: bool, rounds: int = 40) -> int:
    """Let the two gateways process, send and receive until nothing moves; return rounds."""
    for n in range(rounds):
        moved = 0
        for src, dst in ((a, b), (b, a)):
            while batches.run_pending(src.rt):
                pass
            while outbox.flush(src.rt):
                pass
            for m in src.sink.messages[src.taken :]:
                src.taken += 1
                msg = message_from_bytes(m.data, policy=policy.SMTP)
                mail_from = m.mail_from
                if mangle:
                    for name in LOOP_GUARDS:
                        del msg[name]
                    mail_from = src.address
                accept(
                    dst.rt.sessions,
                    msg.as_bytes(),
                    Envelope(mail_from, tuple(m.rcpt_tos)),
                    "smtp",
                    clock=clock,
                )
                moved += 1
            clock.advance(minutes=1)
        if not moved:
            return n
    raise AssertionError("the two gateways never stopped writing to each other")


def start_loop(a: Gateway, b: Gateway, clock: FakeClock) -> None:
    """One forged mail: "from" B's helpdesk address to A's."""
    raw = make_mail(
        sender=b.address, to=a.address, subject="hello", message_id="<seed@evil.example>"
    )
    accept(a.rt.sessions, raw, Envelope(b.address, (a.address,)), "smtp", clock=clock)


def test_two_compliant_gateways_stop_after_one_acknowledgement(
    gateways: tuple[Gateway, Gateway], clock: FakeClock
) -> None:
    a, b = gateways
    start_loop(a, b, clock)
    exchange(a, b, clock, mangle=False)
    # A acknowledged the forged mail; B saw an auto-reply and answered nothing.
    assert len(a.sink.messages) == 1 and b.sink.messages == []
    with b.rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 0


def test_two_gateways_behind_a_mangling_peer_are_stopped_by_the_limits(
    gateways: tuple[Gateway, Gateway], clock: FakeClock
) -> None:
    a, b = gateways
    start_loop(a, b, clock)
    rounds = exchange(a, b, clock, mangle=True)
    # Each side sent its five automatic mails to the other's address; A's sixth was
    # held, so B got nothing more to answer and the exchange ran dry.
    assert len(a.sink.messages) == 5 and len(b.sink.messages) == 5
    assert rounds <= 12
    assert [(r.status, r.reason) for r in rows(a.rt)][-1] == ("suppressed", "recipient-limit")
    assert [r.status for r in rows(b.rt)] == ["sent"] * 5
    for g, opened in ((a, 6), (b, 5)):
        with g.rt.sessions() as s:
            assert s.scalar(select(func.count()).select_from(Ticket)) == opened


@pytest.mark.parametrize(
    "gateways", [{"breaker_threshold": 3, "breaker_window_seconds": 3600}], indirect=True
)
def test_two_gateways_trip_the_circuit_breaker(
    gateways: tuple[Gateway, Gateway], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = gateways
    start_loop(a, b, clock)
    with caplog.at_level(logging.ERROR, logger="mailgate.replies.gates"):
        exchange(a, b, clock, mangle=True)
    assert len(a.sink.messages) == 3 and len(b.sink.messages) == 3
    # A, whose fourth mail would have crossed the threshold, stopped and said so.
    [alert] = [r for r in caplog.records if "circuit breaker open" in r.getMessage()]
    assert alert.levelno == logging.ERROR and alert.name == "mailgate.replies.gates"
    with a.rt.sessions() as s:
        [opened] = s.scalars(select(Event).where(Event.kind == "breaker-open")).all()
        assert opened.reason == "automatic-mail-rate"
    assert {r.reason for r in rows(a.rt) if r.status == "suppressed"} == {"circuit-breaker"}
