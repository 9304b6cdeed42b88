"""Identification: which account a mail is about, from what the customer wrote.

Hosting customers name their account by login, contract number, domain, order number
(``#123456``), server IP or service name, with the labels people actually use in
English, Polish, Slovak, Czech and Russian.  ``extract`` is pure and finds candidates
in the subject and the visible text; ``resolve`` (in ``verify.directory``) matches them
against the account directory.  Values are normalized here, once, so the directory can
compare them exactly.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from publicsuffixlist import PublicSuffixList

_PSL = PublicSuffixList()

# Label words per identifier kind.  A label is followed by ":", "-", "=", "nr", "no.",
# "№" or just whitespace, then the value.
_LABELS: dict[str, tuple[str, ...]] = {
    "login": (
        "login", "username", "user name", "user id", "account", "użytkownik", "nazwa użytkownika",
        "konto", "užívateľské meno", "používateľ", "uživatelské jméno", "uživatel",
        "účet", "логин", "имя пользователя", "учетная запись", "учётная запись", "аккаунт",
    ),
    "contract": (
        "contract", "contract number", "agreement", "umowa", "umowy", "numer umowy",
        "zmluva", "zmluvy", "číslo zmluvy", "smlouva", "smlouvy", "číslo smlouvy",
        "договор", "договора", "номер договора",
    ),
    "order": (
        "order", "order number", "zamówienie", "zamówienia", "numer zamówienia",
        "objednávka", "objednávky", "číslo objednávky", "заказ", "заказа", "номер заказа",
    ),
    "service": (
        "service", "usługa", "usługi", "služba", "služby", "услуга", "услуги", "тариф",
    ),
}  # fmt: skip

# Free-text words such as "account" or "service" say nothing without a separator, so
# every label but the all-digit order number needs one ("Login: x", "umowa nr 12").
_SEPARATOR = r"\s*(?:[:=#]|nr\.?|no\.?|č\.|№|-)\s*(?:[:#]|nr\.?|№)?\s*"
_OPTIONAL = r"\s*(?:[:=#]|nr\.?|no\.?|č\.|№|-)?\s*"
_VALUE = {
    "login": r"([A-Za-z0-9][A-Za-z0-9._-]{1,63})",
    "contract": r"([A-Za-z0-9][A-Za-z0-9/._-]{1,39})",
    "order": r"#?(\d{3,12})",
    "service": r"([A-Za-z0-9][A-Za-z0-9 ._-]{1,40}?)(?=[\s,.;)]*(?:$|\n))",
}


def _label_pattern(kind: str, words: tuple[str, ...]) -> re.Pattern[str]:
    # The leading look-ahead on the labels' first letters lets the engine skip every
    # other position at once; without it each position of the text tried every label
    # of the alternation (about 0.6 ms per pattern on a typical mail).
    firsts = "".join(sorted({c for w in words for c in (w[0].lower(), w[0].upper())}))
    labels = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    separator = _OPTIONAL if kind == "order" else _SEPARATOR
    return re.compile(
        rf"(?=[{re.escape(firsts)}])(?<![\w])(?:{labels}){separator}{_VALUE[kind]}",
        re.IGNORECASE | re.MULTILINE,
    )


_PATTERNS = {kind: _label_pattern(kind, words) for kind, words in _LABELS.items()}
# Each pattern starts with what its match must start with, for the same reason.
_HASH_ORDER = re.compile(r"#(?<![\w#\[]#)(\d{4,12})\b")
_IPV4 = re.compile(r"(?=\d)(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")
_IPV6 = re.compile(
    r"(?=[0-9A-Fa-f:])(?<![\w:])([0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})(?![\w:])"
)
_DOMAIN = re.compile(
    r"(?=[a-z0-9])(?<![\w@.-])"
    r"((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{1,62})(?![\w@-])",
    re.IGNORECASE,
)
_MAX_TEXT = 6_000  # identifiers sit near the top of what the customer wrote


@dataclass(frozen=True, slots=True)
class Identifiers:
    """Normalized candidates found in a mail, by kind."""

    logins: tuple[str, ...] = ()
    contracts: tuple[str, ...] = ()
    orders: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    found: tuple[str, ...] = field(default=())  # "kind=value" in order of discovery

    def pairs(self) -> list[tuple[str, str]]:
        """(kind, value) pairs as the directory stores them."""
        return [tuple(item.split("=", 1)) for item in self.found]  # type: ignore[misc]


def extract(subject: str, text: str, ignore_domains: frozenset[str] = frozenset()) -> Identifiers:
    body = f"{subject}\n{text[:_MAX_TEXT]}"
    found: dict[str, list[str]] = {
        k: [] for k in ("login", "contract", "order", "service", "ip", "domain")
    }
    for kind, pattern in _PATTERNS.items():
        for match in pattern.finditer(body):
            found[kind].append(normalize(kind, match.group(1)))
    found["order"].extend(m.group(1) for m in _HASH_ORDER.finditer(body))
    for match in _IPV4.finditer(body):
        if (ip := _ip(match.group(1))) is not None:
            found["ip"].append(ip)
    for match in _IPV6.finditer(body):
        if match.group(1).count(":") >= 2 and (ip := _ip(match.group(1))) is not None:
            found["ip"].append(ip)
    for match in _DOMAIN.finditer(body):
        domain = normalize("domain", match.group(1))
        if domain and domain not in ignore_domains:
            found["domain"].append(domain)
    unique = {k: list(dict.fromkeys(v for v in vs if v)) for k, vs in found.items()}
    order = [f"{k}={v}" for k, vs in unique.items() for v in vs]
    return Identifiers(
        logins=tuple(unique["login"]),
        contracts=tuple(unique["contract"]),
        orders=tuple(unique["order"]),
        services=tuple(unique["service"]),
        ips=tuple(unique["ip"]),
        domains=tuple(unique["domain"]),
        found=tuple(order),
    )


def normalize(kind: str, value: str) -> str:
    """The form the directory stores: lower-case, registrable domain, canonical IP."""
    value = value.strip().strip(".,;:")
    if kind == "domain":
        host = value.lower().rstrip(".")
        if "." not in host or _PSL.publicsuffix(host) == host:
            return ""
        return str(_PSL.privatesuffix(host) or "")
    if kind == "ip":
        return _ip(value) or ""
    if kind == "order":
        return value.lstrip("#")
    return value.lower()


def _ip(text: str) -> str | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return None if ip.is_unspecified or ip.is_loopback else str(ip)
