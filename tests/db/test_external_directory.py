"""The company's own customer database as the account directory: real SQL queries,
caching on the injected clock, and a database that does not answer."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mailgate.ingest.accept import Envelope, accept
from mailgate.pipeline import batches
from mailgate.store.models import Account, InboundMessage, Ticket
from tests.conftest import make_runtime, make_settings
from tests.support import FakeClock, make_mail

QUERIES = {
    "address_query": "SELECT login, email, role FROM contacts WHERE lower(email) = :address",
    "identifier_query": (
        "SELECT c.login, c.email, c.role FROM services s JOIN contacts c ON c.login = s.login "
        "WHERE s.kind = :kind AND s.value = :value"
    ),
    "account_query": "SELECT login, email, role FROM contacts WHERE login = :login",
}


def crm(path: Path) -> str:
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE contacts (login TEXT, email TEXT, role TEXT);
        CREATE TABLE services (login TEXT, kind TEXT, value TEXT);
        INSERT INTO contacts VALUES ('anna', 'Anna@Firma.example', 'admin'),
                                    ('anna', 'dev@firma.example', 'technical');
        INSERT INTO services VALUES ('anna', 'domain', 'firma-anny.pl');
        """
    )
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def deliver(rt: Any, raw: bytes) -> InboundMessage:
    r = accept(
        rt.sessions, raw, Envelope("x@y", ("support@helpdesk.example",)), "smtp", clock=rt.clock
    )
    while batches.run_pending(rt):
        pass
    with rt.sessions() as s:
        return s.get_one(InboundMessage, r.inbound_id)


def test_accounts_come_from_the_customer_database(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    url = crm(tmp_path / "crm.db")
    rt = make_runtime(make_settings(db_url, tmp_path, directory={"url": url, **QUERIES}), clock)
    try:
        row = deliver(rt, make_mail(sender="dev@firma.example", subject="DNS"))
        assert "challenge:registered-unauthenticated" in row.rule_hits
        row = deliver(rt, make_mail(sender="x@other.example", subject="firma-anny.pl nie działa"))
        assert "account:domain=firma-anny.pl" in row.rule_hits
        with rt.sessions() as s:
            [account] = s.scalars(select(Account)).all()
            assert account.login == "anna"
            assert {(a.address, a.role) for a in account.addresses} == {
                ("anna@firma.example", "admin"),
                ("dev@firma.example", "technical"),
            }
            assert s.scalars(select(Ticket.authorization)).all() == ["awaiting_confirmation"] * 2
        # Answers are cached: a change in the CRM shows only after cache_seconds.
        conn = sqlite3.connect(tmp_path / "crm.db")
        conn.execute("INSERT INTO contacts VALUES ('anna', 'new@firma.example', 'billing')")
        conn.commit()
        conn.close()
        queries_before = len(rt.external._cache)  # type: ignore[union-attr]
        deliver(rt, make_mail(sender="dev@firma.example", subject="again"))
        assert len(rt.external._cache) == queries_before  # type: ignore[union-attr]
        clock.advance(seconds=301)
        deliver(rt, make_mail(sender="dev@firma.example", subject="later"))
        with rt.sessions() as s:
            addresses = s.scalars(select(Account)).one().addresses
            assert "new@firma.example" in {a.address for a in addresses}
    finally:
        rt.close()


def test_customer_database_down_means_no_account_not_a_failure(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        db_url, tmp_path,
        directory={"url": "postgresql+psycopg://nobody@127.0.0.1:9/crm", "timeout": 2, **QUERIES},
    )  # fmt: skip
    rt = make_runtime(settings)
    try:
        row = deliver(rt, make_mail(sender="dev@firma.example"))
        assert row.status == "done"
        assert "consultative:no-account" in row.rule_hits
    finally:
        rt.close()
