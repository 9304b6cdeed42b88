"""Password authorization (issue 20, THREATS.md "passwords in mail"): a login's password
in the mail authorizes the request once and is forgotten; a wrong one gets what a
stranger gets; three wrong ones suspend it for the account and tell its admin once."""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from sqlalchemy import select

from mailgate.daemon.runtime import Runtime
from mailgate.pipeline import passwords as pipeline_passwords
from mailgate.store.models import Account, Article, InboundMessage, PasswordFailure, Ticket
from mailgate.tickets import operators
from mailgate.verify import directory
from tests.conftest import make_runtime, make_settings
from tests.db.test_verification import body, deliver, sent
from tests.support import FakeClock, FakeDns, make_mail

PASSWORD = "Zaq1@wsx-2026"
STRANGER = "Kto Inny <who@else.example>"


def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


def _runtime(db_url: str, tmp_path: Path, clock: FakeClock, enabled: bool = True) -> Runtime:
    settings = make_settings(db_url, tmp_path, verify={"password_authorization": enabled})
    return make_runtime(settings, clock, FakeDns())


@pytest.fixture
def prt(db_url: str, tmp_path: Path, clock: FakeClock) -> Any:
    rt = _runtime(db_url, tmp_path, clock)
    with rt.sessions.begin() as s:
        directory.upsert(
            s,
            directory.AccountSpec(
                login="jkowalski",
                admin="admin@customer.example",
                language="pl",
                addresses=(("jan@customer.example", "technical"),),
                password_hash=_hash(PASSWORD),
            ),
            clock(),
        )
        operators.add(s, "anna@helpdesk.example", "Anna", ["technical"], clock())
    yield rt
    rt.close()


def _mail(password: str, login: str = "jkowalski", subject: str = "Zmiana DNS") -> bytes:
    text = f"Dzień dobry,\nproszę zmienić rekord MX.\nLogin: {login}\nHasło: {password}\nJan\n"
    return make_mail(sender=STRANGER, subject=subject, body=text)


def _to(mails: list[EmailMessage], address: str) -> list[EmailMessage]:
    return [m for m in mails if m["To"] == address]


def _comparable(text: str) -> str:
    return re.sub(r"\[#\d+\]|nr \d+|\d+", "N", text)


def test_the_right_password_authorizes_once_and_is_kept_nowhere(prt: Runtime) -> None:
    row = deliver(prt, _mail(PASSWORD))
    assert "authorized:password" in row.rule_hits and "password:verified" in row.rule_hits
    with prt.sessions() as s:
        t = s.scalars(select(Ticket)).one()
        assert (t.authorization, t.requester) == ("authorized", "who@else.example")
        for article in s.scalars(select(Article)):
            kept = f"{article.subject}{article.text}{article.body_text}{article.html or ''}"
            assert PASSWORD not in kept
        inbound = s.get_one(InboundMessage, row.id)
        assert PASSWORD.encode() not in inbound.raw
        assert b"[password removed by mailgate]" in inbound.raw
    mails = sent(prt)
    assert _to(mails, "admin@customer.example") == []  # no challenge
    [ack] = _to(mails, "who@else.example")
    assert "Użyliśmy go jednorazowo" in body(ack) and "panelu klienckiego" in body(ack)
    assert "zmienić to hasło" not in body(ack)
    [notice] = _to(mails, "anna@helpdesk.example")
    assert PASSWORD not in notice.as_string()
    assert prt.metrics.password_checks.labels("verified")._value.get() == 1


def test_a_wrong_password_gets_exactly_what_a_stranger_gets(
    prt: Runtime, db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    row = deliver(prt, _mail("guess-1"))
    assert "password:failed" in row.rule_hits and "authorized:password" not in row.rule_hits
    assert "challenge:names-account" in row.rule_hits
    mails = sent(prt)
    [challenge] = _to(mails, "admin@customer.example")
    assert "guess-1" not in challenge.as_string()
    [ack] = _to(mails, "who@else.example")
    # The same mail where passwords are never accepted: what a stranger gets today.
    off = _runtime(db_url, tmp_path / "off", clock, enabled=False)
    try:
        deliver(off, _mail("guess-1"))
        [stranger_ack] = _to(sent(off), "who@else.example")
    finally:
        off.close()
    assert _comparable(body(ack)) == _comparable(body(stranger_ack))
    assert ack["Subject"].replace("[#1]", "") == stranger_ack["Subject"].replace("[#2]", "")
    assert "administratora konta" in body(ack)
    assert ticket_authorization(prt) == "awaiting_confirmation"


def ticket_authorization(rt: Runtime, number: int = 1) -> str:
    with rt.sessions() as s:
        return s.scalars(select(Ticket.authorization).where(Ticket.number == number)).one()


def test_an_unknown_login_costs_a_real_check_and_gets_the_stranger_reply(
    prt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []
    real = pipeline_passwords.verify

    def counting(stored: str | None, password: str) -> bool:
        checked.append(stored or "")
        return real(stored, password)

    monkeypatch.setattr(pipeline_passwords, "verify", counting)
    monkeypatch.setattr("mailgate.verify.passwords.verify", counting)
    deliver(prt, _mail(PASSWORD, login="nobody"))
    deliver(prt, _mail("guess-1"))
    # Both mails cost one verification against the same stored hash: no timing tell.
    with prt.sessions() as s:
        stored = s.scalars(select(Account.password_hash)).one()
    assert checked == [stored, stored]
    with prt.sessions() as s:
        failures = s.scalars(select(PasswordFailure).order_by(PasswordFailure.id)).all()
        assert [(f.login, f.account_id is None) for f in failures] == [
            ("nobody", True),
            ("jkowalski", False),
        ]
    acks = _to(sent(prt), "who@else.example")
    assert all("zmienić to hasło" in body(a) for a in acks)
    assert all("Użyliśmy go" not in body(a) for a in acks)


def test_three_wrong_passwords_suspend_password_authorization_for_a_day(
    prt: Runtime, clock: FakeClock
) -> None:
    senders = ("who@else.example", "who@else.example", "third@else.example")
    for n, sender in enumerate(senders, 1):
        raw = make_mail(
            sender=sender,
            subject=f"try {n}",
            body=f"Login: jkowalski\nHasło: guess-{n}-xyz\n",
        )
        row = deliver(prt, raw)
        clock.advance(hours=1)
    assert "password:account-failures=3" in row.rule_hits
    assert "password:sender-failures=1" in row.rule_hits  # the third sender's first
    assert "password:account-suspended" in row.rule_hits
    mails = sent(prt)
    admin = _to(mails, "admin@customer.example")
    [lockout] = [m for m in admin if "wstrzymana" in str(m["Subject"])]
    assert "jkowalski" in body(lockout) and "3" in body(lockout)
    assert ".n." in lockout["Reply-To"]  # the admin's answer becomes an internal note
    for n in (1, 2, 3):
        assert f"guess-{n}" not in lockout.as_string()
    assert prt.metrics.password_lockouts._value.get() == 1
    assert prt.metrics.password_checks.labels("failed")._value.get() == 3

    # Suspended: even the right password only leads to the challenge, and the admin
    # is not told a second time.
    row = deliver(prt, _mail(PASSWORD, subject="right one"))
    assert "password:suspended" in row.rule_hits
    assert "authorized:password" not in row.rule_hits
    assert "challenge:names-account" in row.rule_hits
    deliver(prt, _mail("guess-4-xyz", subject="more"))
    later = sent(prt)
    lockouts = [
        m for m in _to(later, "admin@customer.example") if "wstrzymana" in str(m["Subject"])
    ]
    assert len(lockouts) == 1
    with prt.sessions() as s:
        assert s.scalar(select(Account.password_locked_until)) is not None
        assert len(s.scalars(select(PasswordFailure)).all()) == 3  # suspended: not tried

    # A day later the right password works again.
    clock.advance(hours=24, minutes=1)
    row = deliver(prt, _mail(PASSWORD, subject="next day"))
    assert "authorized:password" in row.rule_hits


def test_failures_outside_the_window_do_not_add_up(prt: Runtime, clock: FakeClock) -> None:
    for n in range(3):
        row = deliver(prt, _mail(f"guess-{n}-abc", subject=f"t{n}"))
        clock.advance(hours=13)
    assert "password:account-failures=2" in row.rule_hits
    assert "password:account-suspended" not in row.rule_hits


def test_without_the_option_a_password_is_never_tried(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    rt = _runtime(db_url, tmp_path, clock, enabled=False)
    try:
        with rt.sessions.begin() as s:
            directory.upsert(
                s,
                directory.AccountSpec(
                    "jkowalski", "admin@customer.example", password_hash=_hash(PASSWORD)
                ),
                clock(),
            )
        row = deliver(rt, _mail(PASSWORD))
        assert not [h for h in row.rule_hits if h.startswith("password:")]
        assert "challenge:names-account" in row.rule_hits
        assert rt.metrics.password_checks.labels("verified")._value.get() == 0
    finally:
        rt.close()


def test_a_hash_from_the_customer_database_is_used(
    prt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = directory.AccountSpec(
        "ivanov", "ivan@ooo.example", language="ru", password_hash=_hash("Пароль-2026!")
    )

    class External:
        def lookup(self, sender: str | None, ids: Any) -> list[directory.AccountSpec]:
            return [spec] if "ivanov" in ids.logins else []

        def close(self) -> None:
            pass

    monkeypatch.setattr(prt, "external", External())
    raw = make_mail(
        sender=STRANGER, subject="смена DNS", body="Логин: ivanov\nПароль: Пароль-2026!\n"
    )
    row = deliver(prt, raw)
    assert "authorized:password" in row.rule_hits
    with prt.sessions() as s:
        assert s.scalar(select(Account.password_hash).where(Account.login == "ivanov"))
