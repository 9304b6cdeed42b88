"""Who is writing, end to end through the pipeline: authorized, confirmation challenge,
consultative and quarantine paths, the challenge answered by reply, its expiry and
reminder, single use under concurrency, and password redaction."""

from __future__ import annotations

import email
import mailbox
import re
import threading
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailgate.daemon.runtime import Runtime
from mailgate.ingest.accept import Envelope, accept
from mailgate.pipeline import batches
from mailgate.replies import outbox
from mailgate.store.models import (
    AccountAddress,
    Article,
    Challenge,
    InboundMessage,
    OutboxMessage,
    Ticket,
)
from mailgate.tickets import challenges
from mailgate.verify import directory
from tests.conftest import make_runtime, make_settings
from tests.dkimkeys import Key, make_key, sign
from tests.support import FakeClock, FakeDns, make_mail

SUPPORT = ("support@helpdesk.example",)


@pytest.fixture(scope="module")
def key() -> Key:
    return make_key()


@pytest.fixture
def vrt(db_url: str, tmp_path: Path, clock: FakeClock, key: Key) -> Any:
    dns = FakeDns(
        {
            "s1._domainkey.customer.example": key.txt,
            "_dmarc.bank.example": "v=DMARC1; p=reject",
        }
    )
    settings = make_settings(db_url, tmp_path, http={"public_url": "https://help.example.com"})
    rt = make_runtime(settings, clock, dns)
    with rt.sessions.begin() as s:
        directory.upsert(
            s,
            directory.AccountSpec(
                login="jkowalski",
                admin="admin@customer.example",
                language="pl",
                addresses=(("jan@customer.example", "technical"),),
                identifiers=(("domain", "sklep-jana.pl"), ("order", "40033")),
            ),
            clock(),
        )
    yield rt
    rt.close()


def deliver(rt: Runtime, raw: bytes, rcpt: tuple[str, ...] = SUPPORT) -> InboundMessage:
    result = accept(rt.sessions, raw, Envelope("x@customer.example", rcpt), "smtp", clock=rt.clock)
    while batches.run_pending(rt):
        pass
    with rt.sessions() as s:
        return s.get_one(InboundMessage, result.inbound_id)


def sent(rt: Runtime) -> list[EmailMessage]:
    while outbox.flush(rt):
        pass
    box = mailbox.Maildir(rt.settings.outbound.maildir, factory=None, create=True)
    out = []
    for k in sorted(box.keys()):
        out.append(email.message_from_bytes(box.get_bytes(k), policy=email_policy.default))
    return out  # type: ignore[return-value]


def ticket(rt: Runtime, number: int = 1) -> Ticket:
    with rt.sessions() as s:
        return s.scalars(select(Ticket).where(Ticket.number == number)).one()


def body(msg: EmailMessage) -> str:
    return msg.get_content()  # type: ignore[no-any-return]


def test_registered_and_authenticated_sender_is_authorized(vrt: Runtime, key: Key) -> None:
    row = deliver(vrt, sign(make_mail(subject="Zmiana DNS"), key, "customer.example"))
    t = ticket(vrt)
    assert t.authorization == "authorized"
    assert "authorized:registered-and-authenticated" in row.rule_hits
    assert "account:address:jan@customer.example" in row.rule_hits
    [ack] = sent(vrt)
    assert ack["To"] == "jan@customer.example"
    assert "administrator" not in body(ack)
    with vrt.sessions() as s:
        article = s.scalars(select(Article).where(Article.direction == "in")).one()
        assert article.auth is not None and article.auth["result"] == "pass"


def test_registered_but_unauthenticated_sender_gets_a_challenge_to_the_admin(vrt: Runtime) -> None:
    row = deliver(vrt, make_mail(subject="Proszę usunąć domenę"))
    t = ticket(vrt)
    assert t.authorization == "awaiting_confirmation"
    assert "challenge:registered-unauthenticated" in row.rule_hits
    mails = sent(vrt)
    assert sorted(m["To"] for m in mails) == ["admin@customer.example", "jan@customer.example"]
    request = next(m for m in mails if m["To"] == "admin@customer.example")
    ack = next(m for m in mails if m["To"] == "jan@customer.example")
    # The admin sees who asked and the subject, never the body.
    assert "jan@customer.example" in body(request)
    assert "Proszę usunąć domenę" in body(request)
    assert "192.0.2.10" not in body(request)
    assert re.search(r"https://help\.example\.com/confirm/[0-9a-f]{32}", body(request))
    assert re.match(r"support\+confirm-[0-9a-f]{32}@helpdesk\.example", request["Reply-To"])
    # The requester is told, without learning the admin address.
    assert "administratora konta" in body(ack)
    assert "admin@customer.example" not in body(ack)
    with vrt.sessions() as s:
        stored = s.scalars(select(Challenge)).one()
        token = re.search(r"confirm-([0-9a-f]{32})", request["Reply-To"]).group(1)  # type: ignore[union-attr]
        assert stored.token_hash == challenges.token_hash(token) != token
        texts = " ".join(a.text for a in s.scalars(select(Article)))
        assert token not in texts  # the token lives only in the mail


def test_unknown_sender_naming_an_account_triggers_a_challenge(vrt: Runtime) -> None:
    row = deliver(
        vrt,
        make_mail(sender="stranger@elsewhere.example", subject="Zamówienie #40033",
                  body="Proszę o zmianę serwerów DNS dla sklep-jana.pl\n"),
    )  # fmt: skip
    assert ticket(vrt).authorization == "awaiting_confirmation"
    assert "challenge:names-account" in row.rule_hits
    assert "account:order=40033" in row.rule_hits
    assert sorted(m["To"] for m in sent(vrt)) == [
        "admin@customer.example",
        "stranger@elsewhere.example",
    ]


def test_unknown_sender_naming_nothing_is_consultative(vrt: Runtime) -> None:
    row = deliver(vrt, make_mail(sender="curious@elsewhere.example", subject="Ile kosztuje VPS?"))
    assert ticket(vrt).authorization == "consultative"
    assert "consultative:no-account" in row.rule_hits
    [ack] = sent(vrt)
    assert ack["To"] == "curious@elsewhere.example"
    assert "zarejestrowanego adresu" in body(ack)


def test_reply_to_pointing_at_a_registered_address_changes_nothing(vrt: Runtime) -> None:
    deliver(vrt, make_mail(sender="mallory@evil.example", subject="hi",
                           headers={"Reply-To": "jan@customer.example"}))  # fmt: skip
    t = ticket(vrt)
    assert (t.requester, t.authorization) == ("mallory@evil.example", "consultative")
    assert [m["To"] for m in sent(vrt)] == ["mallory@evil.example"]


def test_dmarc_reject_domain_without_authentication_is_quarantined_silently(vrt: Runtime) -> None:
    row = deliver(vrt, make_mail(sender="ceo@bank.example", subject="wire money"))
    assert (row.status, row.reason) == ("quarantined", "dmarc-fail")
    assert sent(vrt) == []


def admin_reply(token: str, first_line: str, sender: str = "admin@customer.example") -> bytes:
    return make_mail(
        sender=sender,
        to=f"support+confirm-{token}@helpdesk.example",
        subject="Re: [#1] potwierdzenie",
        body=f"{first_line}\n\nOn Mon, someone wrote:\n> please confirm\n",
    )


def challenge_token(rt: Runtime) -> str:
    request = next(m for m in sent(rt) if m["To"] == "admin@customer.example")
    return re.search(r"confirm-([0-9a-f]{32})", request["Reply-To"]).group(1)  # type: ignore[union-attr]


def test_admin_confirms_by_reply(vrt: Runtime) -> None:
    deliver(vrt, make_mail(subject="Proszę usunąć domenę"))
    token = challenge_token(vrt)
    reply = admin_reply(token, "TAK")
    row = deliver(vrt, reply, (f"support+confirm-{token}@helpdesk.example",))
    assert row.verdict == "AnswerChallenge"
    assert "challenge-outcome:confirmed" in row.rule_hits
    assert ticket(vrt).authorization == "authorized"
    result = [m for m in sent(vrt) if m["To"] == "jan@customer.example"][-1]
    assert "potwierdzone" in result["Subject"]
    # Replaying the same reply changes nothing.
    again = deliver(vrt, admin_reply(token, "NIE").replace(b"Message-ID: <", b"Message-ID: <x"),
                    (f"support+confirm-{token}@helpdesk.example",))  # fmt: skip
    assert "challenge-outcome:used" in again.rule_hits
    assert ticket(vrt).authorization == "authorized"


def test_reply_from_someone_else_or_without_a_clear_answer_does_nothing(vrt: Runtime) -> None:
    deliver(vrt, make_mail(subject="Proszę usunąć domenę"))
    token = challenge_token(vrt)
    rcpt = (f"support+confirm-{token}@helpdesk.example",)
    forged = deliver(vrt, admin_reply(token, "TAK", sender="jan@customer.example"), rcpt)
    assert "challenge-outcome:wrong-sender" in forged.rule_hits
    unclear = deliver(vrt, admin_reply(token, "What is this about?"), rcpt)
    assert unclear.verdict == "Discard" and "challenge-reply-unclear" in unclear.rule_hits
    assert ticket(vrt).authorization == "awaiting_confirmation"
    refused = deliver(vrt, admin_reply(token, "Nie, to nie ja."), rcpt)
    assert "challenge-outcome:refused" in refused.rule_hits
    assert ticket(vrt).authorization == "refused"


def test_trust_always_adds_the_address_to_the_account(vrt: Runtime) -> None:
    deliver(vrt, make_mail(sender="new.admin@agency.example", subject="Zamówienie #40033"))
    token = challenge_token(vrt)
    with vrt.sessions.begin() as s:
        outcome = challenges.answer(s, vrt, token, "confirm", trust=True)
    assert outcome.result == "confirmed"
    with vrt.sessions() as s:
        addresses = s.scalars(select(AccountAddress.address)).all()
    assert "new.admin@agency.example" in addresses


def test_twenty_concurrent_confirmations_succeed_exactly_once(vrt: Runtime) -> None:
    deliver(vrt, make_mail(subject="Proszę usunąć domenę"))
    token = challenge_token(vrt)
    results: list[str] = []
    barrier = threading.Barrier(20)

    def confirm() -> None:
        barrier.wait()
        for _ in range(50):  # SQLite may answer "locked" under this contention
            try:
                with vrt.sessions.begin() as s:
                    results.append(challenges.answer(s, vrt, token, "confirm").result)
                return
            except Exception as exc:
                if "locked" not in str(exc):
                    raise

    threads = [threading.Thread(target=confirm) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["confirmed"] + ["used"] * 19


def test_expiry_and_single_reminder(vrt: Runtime, clock: FakeClock) -> None:
    deliver(vrt, make_mail(subject="Proszę usunąć domenę"))
    first = challenge_token(vrt)
    clock.advance(hours=23)
    assert challenges.sweep(vrt) == (0, 0)
    clock.advance(hours=2)
    assert challenges.sweep(vrt) == (0, 1)
    assert challenges.sweep(vrt) == (0, 0)  # one reminder only
    requests = [m for m in sent(vrt) if m["To"] == "admin@customer.example"]
    assert len(requests) == 2 and "Przypomnienie" in requests[1]["Subject"]
    clock.advance(hours=48)
    with vrt.sessions.begin() as s:
        assert challenges.answer(s, vrt, first, "confirm").result == "expired"
    assert challenges.sweep(vrt) == (1, 0)
    assert ticket(vrt).authorization == "consultative"
    told = [m for m in sent(vrt) if m["To"] == "jan@customer.example"][-1]
    assert "minął" in told["Subject"]
    with vrt.sessions() as s:
        assert {c.outcome for c in s.scalars(select(Challenge))} == {"expired"}


def test_invalid_tokens_are_refused(vrt: Runtime) -> None:
    with vrt.sessions.begin() as s:
        assert challenges.answer(s, vrt, "0" * 32, "confirm").result == "invalid"
        assert challenges.answer(s, vrt, "not-a-token", "confirm").result == "invalid"


def test_pasted_password_is_redacted_and_the_sender_warned(vrt: Runtime) -> None:
    row = deliver(vrt, make_mail(body="Login: jkowalski\nHasło: Zaq1@wsx\nProszę o reset.\n"))
    with vrt.sessions() as s:
        article = s.scalars(select(Article).where(Article.inbound_id == row.id)).one()
        assert "Zaq1@wsx" not in article.text + article.body_text
        assert "[password removed by mailgate]" in article.text
        stored = s.get_one(InboundMessage, row.id)
        # The stored raw copy is rewritten with the same redaction, and says so.
        assert b"Zaq1@wsx" not in stored.raw
        assert "raw-redacted" in stored.rule_hits
        kept = email.message_from_bytes(stored.raw, policy=email_policy.default)
        assert "[password removed by mailgate]" in kept.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    ack = next(m for m in sent(vrt) if m["To"] == "jan@customer.example")
    assert "zmienić to hasło" in body(ack)
    # The acknowledgement promises nothing it did not do.
    assert "przed zapisaniem" not in body(ack)


def test_export_writes_the_redacted_copy_and_says_so(vrt: Runtime, tmp_path: Path) -> None:
    from mailgate.tickets import retention

    deliver(vrt, make_mail(subject="reset", body="Hasło: Zaq1@wsx\nProszę o reset.\n"))
    out = tmp_path / "t1.mbox"
    assert retention.export(vrt, 1, out) >= 1
    assert b"Zaq1@wsx" not in out.read_bytes()
    box = mailbox.mbox(out)
    inbound = [m for m in box if m["Subject"] == "reset"]
    box.close()
    assert [m["X-Mailgate-Redacted"] for m in inbound] == [
        "passwords pasted into this message were removed from mailgate's copy"
    ]


def test_password_warning_passes_the_daily_limit(vrt: Runtime) -> None:
    with vrt.sessions.begin() as s:  # jan's daily allowance of automatic mail is spent
        s.add_all(_automatic_rows("jan@customer.example", vrt.clock(), 5))
    deliver(vrt, make_mail(subject="plain question", message_id="<q1@customer.example>"))
    deliver(vrt, make_mail(body="Hasło: Zaq1@wsx\n", message_id="<q2@customer.example>"))
    with vrt.sessions() as s:
        acks = s.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.kind == "ack", OutboxMessage.ticket_id.is_not(None))
            .order_by(OutboxMessage.id)
        ).all()
    assert [(a.status, a.reason) for a in acks] == [
        ("suppressed", "recipient-limit"),
        ("pending", None),  # the password warning still goes out
    ]


def test_password_warning_never_goes_to_a_suppressed_address(vrt: Runtime) -> None:
    from datetime import timedelta

    from mailgate.store.models import Suppression

    with vrt.sessions.begin() as s:
        s.add(
            Suppression(
                address="jan@customer.example",
                until=vrt.clock() + timedelta(days=3),
                reason="5.1.1",
                created_at=vrt.clock(),
            )
        )
    deliver(vrt, make_mail(body="Hasło: Zaq1@wsx\n"))
    with vrt.sessions() as s:
        ack = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "ack")).one()
    assert (ack.status, ack.reason) == ("suppressed", "address-suppressed")


def _automatic_rows(recipient: str, now: Any, count: int) -> list[OutboxMessage]:
    """Automatic mail already sent to ``recipient`` today."""
    row = {
        "kind": "ack", "automatic": True, "mail_from": "", "rcpt_to": [recipient],
        "recipient": recipient, "raw": b"", "status": "sent", "attempts": 1,
        "released": False, "next_attempt_at": now, "created_at": now,
    }  # fmt: skip
    return [OutboxMessage(message_id=f"earlier{i}@helpdesk.example", **row) for i in range(count)]
