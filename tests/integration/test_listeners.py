"""The daemon end to end over loopback: SMTP and LMTP clients in, tickets committed,
acknowledgements received by a real relay sink."""

from __future__ import annotations

import smtplib
import socket
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailgate.daemon.runtime import Runtime
from mailgate.store.models import InboundMessage, Ticket
from tests import hostile
from tests.conftest import make_runtime, make_settings
from tests.support import DaemonThread, RelaySink, make_mail, wait_until


@pytest.fixture
def relay_rt(db_url: str, tmp_path: Path, sink: RelaySink) -> Runtime:
    settings = make_settings(
        db_url,
        tmp_path,
        outbound={"relay": f"127.0.0.1:{sink.port}"},
        smtp={"max_message_size": 400_000},
    )
    rt = make_runtime(settings)
    yield rt  # type: ignore[misc]
    rt.close()


def ticket_count(rt: Runtime) -> int:
    with rt.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(Ticket)) or 0)


def test_smtp_mail_becomes_ticket_and_acknowledgement(relay_rt: Runtime, sink: RelaySink) -> None:
    with DaemonThread(relay_rt) as d, smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=10) as c:
        refused = c.sendmail(
            "jan@customer.example", ["support@helpdesk.example"], make_mail(subject="DNS")
        )
        assert refused == {}
        [ack] = sink.wait_for(1)
    assert ack.rcpt_tos == ["jan@customer.example"]
    assert b"Subject: [#1] " in ack.data
    assert b"Auto-Submitted: auto-replied" in ack.data
    assert ticket_count(relay_rt) == 1


def test_smtp_refuses_unknown_recipient_and_oversize(relay_rt: Runtime) -> None:
    with DaemonThread(relay_rt) as d, smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=10) as c:
        c.ehlo()
        assert "size" in c.esmtp_features
        c.mail("jan@customer.example")
        code, text = c.rcpt("nobody@helpdesk.example")
        assert code == 550 and text.startswith(b"5.1.1")
        c.rset()
        big = make_mail(body=("x" * 70 + "\n") * 8000)
        # A client that announces SIZE is refused at MAIL FROM ...
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            c.sendmail("jan@customer.example", ["support@helpdesk.example"], big)
        assert refused.value.smtp_code == 552
        # ... one that does not is refused after DATA.
        c.rset()
        c.mail("jan@customer.example")
        assert c.rcpt("support@helpdesk.example")[0] == 250
        assert c.data(big)[0] == 552
    with relay_rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(InboundMessage)) == 0


def lmtp_exchange(port: int, rcpts: list[str], data: bytes) -> list[str]:
    """Speak LMTP by hand: smtplib's LMTP reads only one reply after DATA."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        f = sock.makefile("rwb")

        def reply() -> str:
            lines = []
            while True:
                line = f.readline().decode().rstrip("\r\n")
                lines.append(line)
                if line[3:4] != "-":
                    return line

        def cmd(text: str) -> str:
            f.write(text.encode() + b"\r\n")
            f.flush()
            return reply()

        assert reply().startswith("220")
        assert cmd("LHLO client.example").startswith("250")
        assert cmd("MAIL FROM:<jan@customer.example>").startswith("250")
        rcpt_replies = [cmd(f"RCPT TO:<{r}>") for r in rcpts]
        accepted = sum(r.startswith("250") for r in rcpt_replies)
        assert cmd("DATA").startswith("354")
        f.write(data.replace(b"\n.", b"\n..") + b"\r\n.\r\n")
        f.flush()
        final = [reply() for _ in range(accepted)]
        cmd("QUIT")
        return rcpt_replies + final


def test_lmtp_answers_once_per_recipient(relay_rt: Runtime, sink: RelaySink) -> None:
    raw = make_mail(to="support@helpdesk.example, billing@helpdesk.example")
    with DaemonThread(relay_rt) as d:
        replies = lmtp_exchange(
            d.port("lmtp"),
            ["support@helpdesk.example", "nobody@helpdesk.example", "billing@helpdesk.example"],
            raw,
        )
        sink.wait_for(1)
    assert replies[0].startswith("250") and replies[1].startswith("550 5.1.1")
    assert replies[2].startswith("250")
    # Two accepted recipients → exactly two replies after DATA, both success.
    assert len(replies) == 5
    assert replies[3].startswith("250 2.0.0") and replies[4].startswith("250 2.0.0")
    assert ticket_count(relay_rt) == 1  # one message to two helpdesk addresses, one ticket


def smtp_stored_form(raw: bytes) -> bytes:
    """What the server stores after smtplib sent CRLF ``raw``: a final CRLF is added."""
    return raw if raw.endswith(b"\r\n") else raw + b"\r\n"


def test_bad_input_over_smtp_is_stored_and_processed_or_quarantined(relay_rt: Runtime) -> None:
    samples = hostile.samples()
    with DaemonThread(relay_rt) as d, smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=30) as c:
        for raw in samples.values():
            assert c.sendmail("x@customer.example", ["support@helpdesk.example"], raw) == {}

        def settled() -> bool:
            with relay_rt.sessions() as s:
                states = s.scalars(select(InboundMessage.status)).all()
                return len(states) == len(samples) and all(
                    st in ("done", "quarantined") for st in states
                )

        wait_until(settled, timeout=60, what="all hostile samples settled")
    with relay_rt.sessions() as s:
        rows = s.scalars(select(InboundMessage).order_by(InboundMessage.id)).all()
        outcome = {}
        for name, raw, row in zip(samples, samples.values(), rows, strict=True):
            assert row.raw == smtp_stored_form(raw), f"{name}: stored bytes differ"
            assert row.status == "done" or row.reason, f"{name}: quarantined without a reason"
            outcome[name] = row.reason or row.verdict
    assert outcome["to-10000-addresses"] == "header-too-large"
    assert outcome["deep-nesting"] == "mime-too-deep"
    assert outcome["two-from-headers"] == "no-sender-identity"
    assert outcome["no-from"] == "no-sender-identity"
    for name in (
        "no-message-id",
        "8bit-junk-headers",
        "unknown-charset",
        "undeclared-koi8r",
        "empty-body",
        "truncated-mime",
    ):
        assert outcome[name] == "OpenTicket", (name, outcome[name])


def test_concurrent_sessions_share_commits_and_each_gets_its_own_id(relay_rt: Runtime) -> None:
    import threading

    answers: dict[str, str] = {}
    lock = threading.Lock()

    def client(n: int, port: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
            c.ehlo()
            for i in range(5):
                mid = f"c{n}-{i}@customer.example"
                c.mail("jan@customer.example")
                c.rcpt("support@helpdesk.example")
                code, text = c.data(make_mail(message_id=f"<{mid}>", subject=mid))
                assert code == 250
                with lock:
                    answers[mid] = text.decode().rsplit(" ", 1)[-1]

    with DaemonThread(relay_rt) as d:
        threads = [threading.Thread(target=client, args=(n, d.port("smtp"))) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    with relay_rt.sessions() as s:
        stored = {r.message_id: str(r.id) for r in s.scalars(select(InboundMessage))}
    assert len(stored) == 40
    # "250 2.0.0 OK queued as N": N is the row that holds exactly that message.
    assert answers == stored


def _exchange(port: int, commands: list[bytes]) -> list[str]:
    """Send raw command lines; return every reply line, the banner first."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        f = sock.makefile("rwb")

        def reply() -> list[str]:
            lines = []
            while True:
                line = f.readline().decode().rstrip("\r\n")
                lines.append(line)
                if line[3:4] != "-":
                    return lines

        out = reply()
        for command in commands:
            f.write(command + b"\r\n")
            f.flush()
            out.extend(reply())
        return out


def test_every_smtp_reply_carries_an_enhanced_status_code(relay_rt: Runtime) -> None:
    with DaemonThread(relay_rt) as d:
        smtp = _exchange(
            d.port("smtp"),
            [
                b"EHLO client.example",
                b"MAIL FROM:<jan@customer.example> SIZE=500000",  # over the limit
                b"MAIL FROM:<jan@customer.example>",
                b"MAIL FROM:<jan@customer.example>",  # nested
                b"RCPT TO:<support@helpdesk.example>",
                b"X" * 2000,  # a command line far too long
                b"BOGUS",
                b"NOOP",
                b"RSET",
                b"QUIT",
            ],
        )
        lmtp = _exchange(d.port("lmtp"), [b"LHLO client.example", b"QUIT"])
        with smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=10) as c:
            c.helo()  # no SIZE announced: refused only after the data
            c.mail("jan@customer.example")
            c.rcpt("support@helpdesk.example")
            code, text = c.data(make_mail(body=("x" * 70 + "\n") * 8000))
            assert (code, text[:6]) == (552, b"5.3.4 ")
            c.mail("jan@customer.example")
            c.rcpt("support@helpdesk.example")
            code, text = c.data(b"Subject: x\r\n\r\n" + b"y" * 2000)  # over 998 octets
            assert (code, text[:6]) == (500, b"5.5.2 ")
    banner, *rest = smtp
    assert banner.startswith("220 ") and " 2.0.0 " not in banner  # RFC 2034 §3
    ehlo = [line for line in rest if line.startswith("250-") or line == "250 HELP"]
    assert "250-ENHANCEDSTATUSCODES" in ehlo and "250-ENHANCEDSTATUSCODES" in lmtp
    replies = [line for line in rest if line not in ehlo]
    assert replies[0].startswith("552 5.3.4 ")  # aiosmtpd's own size refusal
    assert replies[1].startswith("250 2.1.0")
    assert replies[2].startswith("503 5.5.1 ")
    assert replies[3].startswith("250 2.1.5")
    assert replies[4].startswith("500 5.5.2 ")
    assert replies[5].startswith("500 5.5.1 ")
    assert [r[:9] for r in replies[6:]] == ["250 2.0.0", "250 2.0.0", "221 2.0.0"]
