"""The outbox against a real SMTP relay sink: delivery, backoff while the relay is
away, permanent refusal, give-up after the lifetime, and resend after a crash."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from mailgate.replies import outbox
from mailgate.replies.render import Rendered
from mailgate.runtime import Runtime
from mailgate.store.models import OutboxMessage
from tests.conftest import make_runtime, make_settings
from tests.support import FakeClock, RelaySink, free_port, start_sink


def enqueue(rt: Runtime, n: int = 1) -> list[int]:
    ids = []
    with rt.sessions.begin() as s:
        for i in range(n):
            raw = f"Message-ID: <m{i}@helpdesk.example>\r\nSubject: t{i}\r\n\r\nhello\r\n".encode()
            row = outbox.enqueue(
                s,
                rt,
                kind="ack",
                ticket_id=None,
                mail_from="",
                rcpt_to=[f"c{i}@customer.example"],
                rendered=Rendered(f"m{i}@helpdesk.example", raw),
            )
            s.flush()
            ids.append(row.id)
    return ids


def row(rt: Runtime, row_id: int) -> OutboxMessage:
    with rt.sessions() as s:
        return s.get_one(OutboxMessage, row_id)


def relay_runtime(
    db_url: str, tmp_path: Path, clock: FakeClock, port: int, **out: object
) -> Runtime:
    settings = make_settings(db_url, tmp_path, outbound={"relay": f"127.0.0.1:{port}", **out})
    return make_runtime(settings, clock)


def test_relay_delivery_with_null_sender(
    db_url: str, tmp_path: Path, clock: FakeClock, sink: RelaySink
) -> None:
    rt = relay_runtime(db_url, tmp_path, clock, sink.port)
    try:
        [row_id] = enqueue(rt)
        assert outbox.flush(rt) == 1
        [msg] = sink.wait_for(1)
        assert msg.mail_from == "<>" or msg.mail_from == ""
        assert msg.rcpt_tos == ["c0@customer.example"]
        assert b"Message-ID: <m0@helpdesk.example>" in msg.data
        r = row(rt, row_id)
        assert r.status == "sent" and r.attempts == 1 and r.sent_at == clock()
        assert outbox.flush(rt) == 0
    finally:
        rt.close()


def test_relay_down_backs_off_then_delivers_once(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    port = free_port()  # nothing listens here yet
    rt = relay_runtime(db_url, tmp_path, clock, port, retry_base_seconds=60, retry_max_seconds=300)
    try:
        ids = enqueue(rt, 3)
        assert outbox.flush(rt) == 3
        first = row(rt, ids[0])
        assert first.status == "pending" and first.attempts == 1
        assert "unreachable" in (first.last_error or "")
        assert first.next_attempt_at == clock() + timedelta(seconds=60)
        assert outbox.flush(rt) == 0  # not due
        clock.advance(seconds=60)
        assert outbox.flush(rt) == 3
        assert row(rt, ids[0]).attempts == 2
        # Now the relay comes back on that port.
        relay, controller, _ = start_sink(port)
        try:
            clock.advance(seconds=120)
            assert outbox.flush(rt) == 3
            relay.wait_for(3)
            assert sorted(m.rcpt_tos[0] for m in relay.messages) == [
                "c0@customer.example",
                "c1@customer.example",
                "c2@customer.example",
            ]
            assert all(row(rt, i).status == "sent" for i in ids)
            clock.advance(days=1)
            assert outbox.flush(rt) == 0
            assert len(relay.messages) == 3
        finally:
            controller.stop()
    finally:
        rt.close()


def test_permanent_refusal_marks_failed(
    db_url: str, tmp_path: Path, clock: FakeClock, sink: RelaySink
) -> None:
    sink.reply = "554 5.7.1 no thanks"
    rt = relay_runtime(db_url, tmp_path, clock, sink.port)
    try:
        [row_id] = enqueue(rt)
        outbox.flush(rt)
        r = row(rt, row_id)
        assert r.status == "failed" and "554" in (r.last_error or "")
    finally:
        rt.close()


def test_gives_up_after_lifetime(db_url: str, tmp_path: Path, clock: FakeClock) -> None:
    rt = relay_runtime(
        db_url, tmp_path, clock, free_port(), lifetime_hours=2, retry_max_seconds=600
    )
    try:
        [row_id] = enqueue(rt)
        for _ in range(30):
            outbox.flush(rt)
            clock.advance(seconds=600)
            if row(rt, row_id).status == "failed":
                break
        r = row(rt, row_id)
        assert r.status == "failed"
        assert r.attempts >= 12  # kept trying for the whole lifetime first
    finally:
        rt.close()


def test_crash_between_claim_and_record_resends_the_same_message(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(db_url, tmp_path)
    rt = make_runtime(settings, clock)
    try:
        [row_id] = enqueue(rt)
        outbox._claim(rt, 10)  # claimed, then the process dies before sending
        assert outbox.flush(rt) == 0
        clock.advance(seconds=outbox.send_lease(rt, 1).total_seconds() + 1)
        assert outbox.flush(rt) == 1
        assert outbox.flush(rt) == 0
        files = list((tmp_path / "sent" / "new").iterdir())
        assert len(files) == 1
        with rt.sessions() as s:
            assert s.scalars(select(OutboxMessage.status)).all() == ["sent"]
        # Maildir delivery is idempotent: a resend of the same row rewrites the same file.
        with rt.sessions.begin() as s:
            s.get_one(OutboxMessage, row_id).status = "pending"
        clock.advance(seconds=1)
        outbox.flush(rt)
        assert len(list((tmp_path / "sent" / "new").iterdir())) == 1
    finally:
        rt.close()
