"""Priority and incidents: is a new ticket urgent, and does it say what an incident needs?

``assess`` reads the configured phrases (five languages) in the subject and visible
text, then the sender's Importance/X-Priority/Priority headers, and returns the
priority with the reason that decided it (stored in the rule hits and on the ticket).
``missing_items`` lists what a high-priority report lacks — the server's IP or an order
number, the service, when it started (with a time zone) and some diagnostics — so the
acknowledgement can ask for exactly those.  Pure functions; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mailgate.config import PrioritySettings
from mailgate.verify.identity import Identifiers

ITEMS = ("target", "service", "start_time", "diagnostics")
_SAMPLE = 20_000  # characters of text searched; the words that matter come first

# Names of services (not "server", which every report says and which names nothing).
_SERVICES = re.compile(
    r"\b(?:vps|vds|dedicated|dedyk\w*|hosting\w*|"
    r"e-?mail|mail\w*|poczt\w*|pošt\w*|почт\w*|dns|ssl|tls|certifi\w*|certyfikat\w*|"
    r"database|mysql|postgres\w*|baz\w* danych|databáz\w*|баз\w* данных|"
    r"website|www|stron\w*|stránk\w*|web\w*|сайт\w*|domen\w*|domain\w*|domén\w*|домен\w*|"
    r"ftp|ssh|cpanel|plesk|backup\w*|kopi\w* zapasow\w*|záloh\w*|бэкап\w*)\b",
    re.IGNORECASE,
)
# A clock time with a zone: "10:15 UTC", "08:00 CET", "14:30 +02:00", "9:05Z", "MSK".
_START = re.compile(
    r"\b\d{1,2}[:.]\d{2}(?::\d{2})?\s*(?:UTC|GMT|CET|CEST|EET|EEST|MSK|Z\b|[+-]\d{2}:?\d{2})",
    re.IGNORECASE,
)
_DIAGNOSTICS = re.compile(
    r"\b(?:ping|traceroute|tracert|mtr|curl|telnet|nslookup|dig|error|errors|błąd\w*|"
    r"chyb\w*|ошибк\w*|timed? ?out|timeout|refused|odmow\w*|packet loss|HTTP [45]\d\d|"
    r"[45]\d\d (?:error|bad gateway|service unavailable)|log\w*|лог\w*)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Assessment:
    priority: str  # high | normal
    reason: str | None  # "keyword:awaria", "header:x-priority=1"; None for normal


NORMAL = Assessment("normal", None)


def assess(
    subject: str, text: str, headers: Iterable[tuple[str, str]], settings: PrioritySettings
) -> Assessment:
    haystack = f"{subject}\n{text[:_SAMPLE]}".casefold()
    for phrase in settings.keywords:
        if phrase.casefold() in haystack:
            return Assessment("high", f"keyword:{phrase}")
    if settings.headers:
        for name, value in headers:
            reason = _header_says_high(name.lower(), value.strip().lower())
            if reason:
                return Assessment("high", reason)
    return NORMAL


def _header_says_high(name: str, value: str) -> str | None:
    if name == "importance" and value == "high":
        return "header:importance=high"
    if name == "x-priority" and value[:1] in ("1", "2"):
        return f"header:x-priority={value[:1]}"
    if name == "priority" and value == "urgent":
        return "header:priority=urgent"
    return None


def missing_items(subject: str, text: str, found: Identifiers) -> tuple[str, ...]:
    """What an incident report lacks, in the order ``ITEMS`` asks for it."""
    body = f"{subject}\n{text[:_SAMPLE]}"
    have = {
        "target": bool(found.ips or found.orders),
        "service": bool(found.services or _SERVICES.search(body)),
        "start_time": bool(_START.search(body)),
        "diagnostics": bool(_DIAGNOSTICS.search(body)),
    }
    return tuple(item for item in ITEMS if not have[item])
