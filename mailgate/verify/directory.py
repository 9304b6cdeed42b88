"""The account directory: registered addresses and identifiers, and resolving a mail to
an account.

Resolution order: the sender's address first (a registered address of exactly one
account), then the identifiers the customer named (login, contract, order, domain,
server IP, service).  When the evidence points at more than one account nothing is
guessed: the mail is treated as naming no account, and the rule hits say why.  Functions
take a ``Session`` and never commit; the CLI and the pipeline frame the transactions.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.store import memo
from mailgate.store.models import Account, AccountAddress, AccountIdentifier
from mailgate.verify import passwords
from mailgate.verify.identity import Identifiers, normalize

log = logging.getLogger(__name__)

ROLES = ("admin", "technical", "billing", "abuse")
IDENTIFIER_KINDS = ("domain", "contract", "order", "ip", "service")


@dataclass(frozen=True, slots=True)
class AccountMatch:
    account_id: int
    login: str
    language: str | None
    admin_address: str | None
    sender_roles: tuple[str, ...]  # roles the sender's address holds in this account
    how: tuple[str, ...]  # "address:<addr>", "login=<x>", "domain=<x>" …

    @property
    def registered_sender(self) -> bool:
        return bool(self.sender_roles)


@dataclass(frozen=True, slots=True)
class Resolution:
    match: AccountMatch | None
    notes: tuple[str, ...] = field(default=())


_ADDRESSES = "directory.addresses"  # memo: sender address → [(account id, role)]


def know_senders(session: Session, senders: Iterable[str]) -> None:
    """Read the registered addresses of many senders (a batch's) in one query, so that
    ``resolve`` asks nothing more for them in this session; ``upsert`` forgets them."""
    wanted = {sender.lower() for sender in senders}
    known: dict[str, list[tuple[int, str]]] = {address: [] for address in wanted}
    if wanted:
        rows = session.execute(
            select(AccountAddress.address, AccountAddress.account_id, AccountAddress.role).where(
                AccountAddress.address.in_(wanted)
            )
        )
        for address, account_id, role in rows:
            known[address].append((account_id, role))
    memo.forget(session, _ADDRESSES)
    memo.remember(session, _ADDRESSES, lambda: known)


def _roles_of(session: Session, sender: str) -> list[tuple[int, str]]:
    known: dict[str, list[tuple[int, str]]] = memo.remember(session, _ADDRESSES, dict)
    address = sender.lower()
    if address in known:
        return known[address]
    query = select(AccountAddress.account_id, AccountAddress.role).where(
        AccountAddress.address == address
    )
    return [(account_id, role) for account_id, role in session.execute(query)]


def resolve(session: Session, sender: str | None, ids: Identifiers) -> Resolution:
    by_address: dict[int, list[str]] = {}
    if sender:
        for account_id, role in _roles_of(session, sender):
            by_address.setdefault(account_id, []).append(role)
    by_identifier = _accounts_named(session, ids)
    if len(by_address) == 1:
        account_id = next(iter(by_address))
        how = [f"address:{sender}", *by_identifier.get(account_id, [])]
        return Resolution(_match(session, account_id, by_address[account_id], how))
    if len(by_address) > 1:
        # A reseller's address on several accounts: the identifiers must pick one.
        named = [a for a in by_address if a in by_identifier]
        if len(named) == 1:
            how = [f"address:{sender}", *by_identifier[named[0]]]
            return Resolution(_match(session, named[0], by_address[named[0]], how))
        return Resolution(None, ("account:sender-on-several-accounts",))
    if len(by_identifier) == 1:
        account_id, how = next(iter(by_identifier.items()))
        return Resolution(_match(session, account_id, [], how))
    if len(by_identifier) > 1:
        return Resolution(None, ("account:identifiers-name-several-accounts",))
    return Resolution(None, ("account:none-named",) if ids.found else ())


def _accounts_named(session: Session, ids: Identifiers) -> dict[int, list[str]]:
    named: dict[int, list[str]] = {}
    if ids.logins:
        for account_id, login in session.execute(
            select(Account.id, Account.login).where(Account.login.in_(ids.logins))
        ):
            named.setdefault(account_id, []).append(f"login={login}")
    pairs = [(k, v) for k, v in ids.pairs() if k != "login"]
    for kind in {k for k, _ in pairs}:
        values = [v for k, v in pairs if k == kind]
        for account_id, value in session.execute(
            select(AccountIdentifier.account_id, AccountIdentifier.value).where(
                AccountIdentifier.kind == kind, AccountIdentifier.value.in_(values)
            )
        ):
            named.setdefault(account_id, []).append(f"{kind}={value}")
    return named


def _match(session: Session, account_id: int, roles: list[str], how: list[str]) -> AccountMatch:
    account = session.get_one(Account, account_id)
    return AccountMatch(
        account_id=account.id,
        login=account.login,
        language=account.language,
        admin_address=admin_address(session, account.id),
        sender_roles=tuple(sorted(set(roles))),
        how=tuple(dict.fromkeys(how)),
    )


def login_of(session: Session, account_id: int) -> str:
    return session.get_one(Account, account_id).login


def match_for_challenge(session: Session, account_id: int, admin: str) -> AccountMatch:
    """The account as a challenge reminder needs it (the admin address it went to)."""
    account = session.get_one(Account, account_id)
    return AccountMatch(account.id, account.login, account.language, admin, (), ("reminder",))


def admin_address(session: Session, account_id: int) -> str | None:
    return session.scalar(
        select(AccountAddress.address)
        .where(AccountAddress.account_id == account_id, AccountAddress.role == "admin")
        .order_by(AccountAddress.id)
        .limit(1)
    )


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """An account as the CLI and importers describe it."""

    login: str
    admin: str
    name: str = ""
    language: str | None = None
    addresses: tuple[tuple[str, str], ...] = ()  # (address, role)
    identifiers: tuple[tuple[str, str], ...] = ()  # (kind, raw value)
    password_hash: str | None = None  # the panel's hash; None leaves the stored one

    def problems(self) -> list[str]:
        found = []
        if not self.login.strip():
            found.append("login is empty")
        for address, role in ((self.admin, "admin"), *self.addresses):
            if "@" not in address or any(c.isspace() for c in address):
                found.append(f"{address!r} is not an e-mail address")
            if role not in ROLES:
                found.append(f"role {role!r} is not one of {', '.join(ROLES)}")
        for kind, value in self.identifiers:
            if kind not in IDENTIFIER_KINDS:
                found.append(f"identifier kind {kind!r} is unknown")
            elif not normalize(kind, value):
                found.append(f"{kind} {value!r} is not valid")
        if self.password_hash and passwords.scheme(self.password_hash) is None:
            found.append(
                "password_hash is not a bcrypt, argon2id, $6$ crypt or PBKDF2-SHA256 hash"
                " (a plaintext password is never stored)"
            )
        if self.language and self.language not in ("en", "pl", "sk", "cs", "ru"):
            found.append(f"language {self.language!r} is not one of en, pl, sk, cs, ru")
        return found


def upsert(session: Session, spec: AccountSpec, now: datetime) -> Account:
    """Create the account or add the given addresses and identifiers to it."""
    memo.forget(session, _ADDRESSES)  # the addresses read for a batch may change here
    account = session.scalar(select(Account).where(Account.login == spec.login.lower()))
    if account is None:
        account = Account(login=spec.login.lower(), name=spec.name, created_at=now)
        session.add(account)
    if spec.name:
        account.name = spec.name
    if spec.language:
        account.language = spec.language
    if spec.password_hash and passwords.scheme(spec.password_hash):
        account.password_hash = spec.password_hash.strip()
    have_addresses = {(a.address, a.role) for a in account.addresses}
    for address, role in _unique([(spec.admin, "admin"), *spec.addresses]):
        key = (address.lower(), role)
        if key not in have_addresses:
            account.addresses.append(AccountAddress(address=key[0], role=role, created_at=now))
            have_addresses.add(key)
    have_ids = {(i.kind, i.value) for i in account.identifiers}
    for kind, raw in spec.identifiers:
        key = (kind, normalize(kind, raw))
        if key in have_ids:
            continue
        owner = session.scalar(
            select(AccountIdentifier.account_id).where(
                AccountIdentifier.kind == key[0], AccountIdentifier.value == key[1]
            )
        )
        if owner is not None:
            # An identifier names one account; the first registration keeps it.
            log.warning("%s %s already belongs to another account; not added", *key)
            continue
        account.identifiers.append(AccountIdentifier(kind=kind, value=key[1]))
        have_ids.add(key)
    session.flush()
    return account


def _unique(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(items))


_FIELDS = ("domains", "contracts", "orders", "ips", "services")
# Every column (CSV) or key (JSON) an import may have; anything else is refused, so a
# column named after a command-line flag (``address``, ``domain``) is not lost quietly.
COLUMNS = ("login", "admin", "name", "lang", "language", "addresses", *_FIELDS, "password_hash")


def read_specs(path: Path) -> list[AccountSpec]:
    """Accounts from a CSV file with a header row, or a JSON list of objects."""
    text = path.read_text(encoding="utf-8-sig")
    rows: list[dict[str, Any]]
    if path.suffix.lower() == ".json" or text.lstrip().startswith("["):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from exc
        if not isinstance(loaded, list) or not all(isinstance(r, dict) for r in loaded):
            raise ValueError(f"{path}: expected a JSON list of objects")
        rows = loaded
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
    unknown = sorted(
        {str(k or "(values beyond the header)") for row in rows for k in row} - set(COLUMNS)
    )
    if unknown:
        hints = [f"{k!r}{_plural_hint(k)}" for k in unknown]
        raise ValueError(
            f"{path}: unknown column(s) {', '.join(hints)}; the columns are {', '.join(COLUMNS)}"
        )
    specs = []
    for number, row in enumerate(rows, 1):
        if not row.get("login") or not row.get("admin"):
            raise ValueError(f"{path}: entry {number} needs login and admin")
        identifiers = [
            (kind.removesuffix("s"), value) for kind in _FIELDS for value in _values(row.get(kind))
        ]
        addresses = []
        for item in _values(row.get("addresses")):
            address, _, role = item.rpartition(":")
            addresses.append((address, role) if address else (item, "technical"))
        specs.append(
            AccountSpec(
                login=str(row["login"]),
                admin=str(row["admin"]),
                name=str(row.get("name") or ""),
                language=str(row.get("lang") or row.get("language") or "") or None,
                addresses=tuple(addresses),
                identifiers=tuple(identifiers),
                password_hash=str(row.get("password_hash") or "").strip() or None,
            )
        )
    return specs


def _plural_hint(column: str) -> str:
    close = difflib.get_close_matches(column, COLUMNS, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _values(field_value: Any) -> list[str]:
    if field_value is None:
        return []
    if isinstance(field_value, list):
        return [str(v).strip() for v in field_value if str(v).strip()]
    return [v for v in str(field_value).replace(",", " ").split() if v]
