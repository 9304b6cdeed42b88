"""The outbox against a real SMTP relay sink: delivery, backoff while the relay is
away or says 4xx, permanent refusal and give-up told on the ticket, resend after a
crash, concurrent senders, TLS verification and DKIM signatures on what leaves."""

from __future__ import annotations

import ipaddress
import ssl
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dkim
import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from mailgate import config
from mailgate.daemon.runtime import Runtime
from mailgate.errors import TemporaryError
from mailgate.replies import outbox
from mailgate.replies.render import Rendered
from mailgate.replies.sender import SmtpRelayTransport
from mailgate.store.models import Article, Event, OutboxMessage
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


# --------------------------------------------------------------------------- issue 6


def test_first_retry_comes_within_a_minute_then_backs_off() -> None:
    out = make_settings("sqlite:///unused.db", Path("/tmp")).outbound
    defaults = type(out)()
    assert defaults.retry_base_seconds <= 60
    delays = [min(defaults.retry_base_seconds * 2**n, defaults.retry_max_seconds) for n in range(8)]
    assert delays[0] <= 60 and delays == sorted(delays) and delays[-1] == 3600
    assert defaults.lifetime_hours == 120  # like Postfix's maximal_queue_lifetime


def test_relay_refusing_for_a_while_loses_nothing_and_sends_nothing_twice(
    db_url: str, tmp_path: Path, clock: FakeClock, sink: RelaySink
) -> None:
    sink.reply = "451 4.3.2 System not accepting network messages"
    rt = relay_runtime(db_url, tmp_path, clock, sink.port, retry_base_seconds=30)
    try:
        ids = enqueue(rt, 4)
        for wait in (0, 30, 60, 120):  # the relay says "later" four times
            clock.advance(seconds=wait)
            assert outbox.flush(rt) == 4
        assert all(row(rt, i).status == "pending" for i in ids)
        assert "451" in (row(rt, ids[0]).last_error or "")
        assert sink.messages == []
        sink.reply = "250 2.0.0 OK"
        clock.advance(seconds=240)
        assert outbox.flush(rt) == 4
        for _ in range(3):
            clock.advance(hours=1)
            assert outbox.flush(rt) == 0
        ids_sent = sorted(m.data.split(b"\r\n", 1)[0] for m in sink.wait_for(4))
        assert len(ids_sent) == len(set(ids_sent)) == 4
        assert [(row(rt, i).status, row(rt, i).attempts) for i in ids] == [("sent", 5)] * 4
    finally:
        rt.close()


def pipeline_ack(rt: Runtime) -> OutboxMessage:
    from mailgate.ingest.accept import Envelope
    from tests.db.test_pipeline import deliver
    from tests.support import make_mail

    deliver(rt, make_mail(), Envelope("jan@customer.example", ("support@helpdesk.example",)))
    with rt.sessions() as s:
        return s.scalars(select(OutboxMessage)).one()


def internal_notes(rt: Runtime, ticket_id: int) -> list[Article]:
    with rt.sessions() as s:
        return list(
            s.scalars(select(Article).where(Article.ticket_id == ticket_id, Article.internal))
        )


def test_permanent_refusal_is_told_to_the_operator_on_the_ticket(
    db_url: str, tmp_path: Path, clock: FakeClock, sink: RelaySink
) -> None:
    sink.reply = "554 5.7.1 Service unavailable; client host blocked"
    rt = relay_runtime(db_url, tmp_path, clock, sink.port)
    try:
        ack = pipeline_ack(rt)
        assert ack.ticket_id is not None
        outbox.flush(rt)
        r = row(rt, ack.id)
        assert (r.status, r.reason, r.attempts) == ("failed", "relay-rejected", 1)
        [note] = internal_notes(rt, ack.ticket_id)
        assert note.author == "mailgate" and "554 5.7.1" in note.text
        with rt.sessions() as s:
            [event] = s.scalars(select(Event)).all()
        assert (event.kind, event.reason, event.ticket_id) == (
            "send-failed",
            "relay-rejected",
            ack.ticket_id,
        )
        clock.advance(days=1)
        assert outbox.flush(rt) == 0  # never retried
    finally:
        rt.close()


def test_giving_up_after_the_lifetime_is_noted_on_the_ticket(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    rt = relay_runtime(db_url, tmp_path, clock, free_port(), lifetime_hours=1)
    try:
        ack = pipeline_ack(rt)
        assert ack.ticket_id is not None
        for _ in range(20):
            outbox.flush(rt)
            clock.advance(minutes=10)
        r = row(rt, ack.id)
        assert (r.status, r.reason) == ("failed", "lifetime-expired")
        [note] = internal_notes(rt, ack.ticket_id)
        assert "lifetime-expired" in note.text and "unreachable" in note.text
    finally:
        rt.close()


def self_signed_context(tmp_path: Path) -> ssl.SSLContext:
    """A server TLS context with a certificate no trust store knows."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.invalid")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "relay.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "relay.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "relay.pem", tmp_path / "relay.key")
    return context


def test_starttls_verifies_the_relay_certificate(tmp_path: Path) -> None:
    relay = RelaySink()
    port = free_port()
    controller = Controller(
        relay,
        hostname="127.0.0.1",
        port=port,
        tls_context=self_signed_context(tmp_path),
        require_starttls=True,
        ready_timeout=10,
    )
    controller.start()
    try:
        transport = SmtpRelayTransport("127.0.0.1", port, tls="starttls", timeout=10)
        with pytest.raises(TemporaryError, match="CERTIFICATE_VERIFY_FAILED"), transport.connect():
            pass
        assert relay.messages == []
    finally:
        controller.stop()


def test_the_default_setting_sends_to_a_plain_loopback_relay(sink: RelaySink) -> None:
    # The local Postfix on 127.0.0.1:25 rarely has a certificate for "localhost".
    tls = config.Settings().outbound.tls
    transport = SmtpRelayTransport("127.0.0.1", sink.port, tls=tls, timeout=10)
    with transport.connect() as conn:
        conn.send("", ["jan@customer.example"], b"Subject: hi\r\n\r\nhello\r\n", "k")
    assert len(sink.wait_for(1)) == 1


def test_starttls_never_falls_back_to_plain_text(sink: RelaySink) -> None:
    # The sink offers no STARTTLS at all: the mail waits rather than travel in clear.
    transport = SmtpRelayTransport("127.0.0.1", sink.port, tls="starttls", timeout=10)
    with pytest.raises(TemporaryError, match="STARTTLS"), transport.connect():
        pass
    assert sink.messages == []


def test_concurrent_senders_never_send_a_row_twice(
    db_url: str, tmp_path: Path, clock: FakeClock, sink: RelaySink
) -> None:
    senders = [relay_runtime(db_url, tmp_path, clock, sink.port) for _ in range(3)]
    try:
        ids = enqueue(senders[0], 60)
        barrier = threading.Barrier(len(senders))
        attempted: list[int] = []

        def drain(rt: Runtime) -> None:
            barrier.wait(10)
            while n := outbox.flush(rt, 4):
                attempted.append(n)

        threads = [threading.Thread(target=drain, args=(rt,)) for rt in senders]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sum(attempted) == 60
        delivered = [m.data.split(b"\r\n", 1)[0] for m in sink.wait_for(60)]
        assert len(delivered) == len(set(delivered)) == 60
        assert {(row(senders[0], i).status, row(senders[0], i).attempts) for i in ids} == {
            ("sent", 1)
        }
    finally:
        for rt in senders:
            rt.close()


def test_what_leaves_is_dkim_signed_and_verifies(
    db_url: str, tmp_path: Path, clock: FakeClock, sink: RelaySink
) -> None:
    from tests.unit.test_outgoing import fake_dns, write_key

    public = write_key(tmp_path / "dkim.pem")
    key = {"domain": "helpdesk.example", "selector": "s1", "key_file": str(tmp_path / "dkim.pem")}
    settings = make_settings(
        db_url, tmp_path, outbound={"relay": f"127.0.0.1:{sink.port}"}, dkim={"sign": [key]}
    )
    rt = make_runtime(settings, clock)
    try:
        ack = pipeline_ack(rt)
        assert b"DKIM-Signature" not in ack.raw  # stored unsigned, signed as it leaves
        outbox.flush(rt)
        [msg] = sink.wait_for(1)
        assert msg.data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
        dns = fake_dns({"s1._domainkey.helpdesk.example": b"v=DKIM1; k=rsa; p=" + public})
        assert dkim.verify(msg.data, dnsfunc=dns)
    finally:
        rt.close()
