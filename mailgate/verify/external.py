"""An existing customer database as the account directory, read through configured SELECTs.

Hosting companies already keep their customers somewhere; copying them by hand into
mailgate would go stale.  ``ExternalDirectory`` runs the admin's queries (read-only
user recommended) in the facts stage — outside any mailgate transaction — caches the
answers for ``cache_seconds``, and hands back ``AccountSpec`` values (with the
account's password hash when ``account_query`` returns one) that the pipeline
upserts into mailgate's own tables, so tickets and challenges can refer to them.
A customer database that does not answer costs a verdict nothing worse than "no
account named": the lookup is skipped and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from mailgate.clock import Clock
from mailgate.config import DirectorySettings
from mailgate.verify import passwords
from mailgate.verify.directory import ROLES, AccountSpec
from mailgate.verify.identity import Identifiers

log = logging.getLogger(__name__)

_Row = tuple[str, str, str, str]  # login, address, role, password hash ("" without)


class ExternalDirectory:
    def __init__(self, settings: DirectorySettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.engine: Engine = _engine(settings)
        self._cache: dict[tuple[str, ...], tuple[float, list[_Row]]] = {}

    def lookup(self, sender: str | None, ids: Identifiers) -> list[AccountSpec]:
        """Accounts the sender belongs to or the identifiers name, with all their contacts."""
        rows: list[_Row] = []
        named: dict[str, list[tuple[str, str]]] = {}  # login → identifiers that found it
        s = self.settings
        try:
            if sender and s.address_query:
                rows += self._query(s.address_query, address=sender.lower())
            if s.identifier_query:
                for kind, value in ids.pairs():
                    if kind == "login":
                        continue
                    for row in self._query(s.identifier_query, kind=kind, value=value):
                        rows.append(row)
                        named.setdefault(row[0], []).append((kind, value))
            logins = sorted({r[0] for r in rows} | set(ids.logins))
            contacts = [r for login in logins for r in self._query(s.account_query, login=login)]
        except SQLAlchemyError as exc:
            log.warning("customer database unavailable, lookup skipped: %s", exc)
            return []
        return _specs(contacts, named)

    def _query(self, sql: str, **params: str) -> list[_Row]:
        key = (sql, *(f"{k}={v}" for k, v in sorted(params.items())))
        now = self.clock().timestamp()
        cached = self._cache.get(key)
        if cached and cached[0] > now:
            return cached[1]
        with self.engine.connect() as conn:
            result = conn.execute(text(sql), params)
            rows = [_row(r) for r in result]
        self._cache[key] = (now + self.settings.cache_seconds, rows)
        return rows

    def close(self) -> None:
        self.engine.dispose()


def _engine(settings: DirectorySettings) -> Engine:
    url = settings.url
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect_args = {
            "connect_timeout": settings.timeout,
            "options": f"-c statement_timeout={settings.timeout * 1000}",
        }
    elif url.startswith("sqlite"):
        connect_args = {"timeout": settings.timeout}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def _row(row: Any) -> _Row:
    values = tuple(row)
    login, address, role = (str(v).strip() for v in values[:3])
    # An optional fourth column: the account's password hash (only account_query's
    # is read).
    hashed = str(values[3] or "").strip() if len(values) > 3 else ""
    return login.lower(), address.lower(), role.lower(), hashed


def _specs(contacts: Iterable[_Row], named: dict[str, list[tuple[str, str]]]) -> list[AccountSpec]:
    by_login: dict[str, list[tuple[str, str]]] = {}
    hashes: dict[str, str] = {}
    for login, address, role, hashed in contacts:
        if hashed and passwords.scheme(hashed):
            hashes.setdefault(login, hashed)
        if role in ROLES and "@" in address:
            by_login.setdefault(login, []).append((address, role))
    specs = []
    for login, addresses in by_login.items():
        admins = [a for a, r in addresses if r == "admin"]
        if not admins:
            log.warning("customer database: account %s has no admin address; ignored", login)
            continue
        others = tuple((a, r) for a, r in addresses if (a, r) != (admins[0], "admin"))
        identifiers = tuple(dict.fromkeys(named.get(login, [])))
        specs.append(
            AccountSpec(
                login=login,
                admin=admins[0],
                addresses=others,
                identifiers=identifiers,
                password_hash=hashes.get(login),
            )
        )
    return specs
