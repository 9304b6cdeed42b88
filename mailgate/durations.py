"""Durations as people write them: ``10m``, ``2h``, ``1d``, ``1h30m``.

Used by the SLA targets in the config and by an operator's ``#eta 2h …`` command, so
both accept the same forms.
"""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d{1,5})\s*([dhm])", re.IGNORECASE)
_WHOLE = re.compile(r"^(?:\s*\d{1,5}\s*[dhm])+\s*$", re.IGNORECASE)
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_duration(text: str) -> timedelta | None:
    """The duration ``text`` names, or None when it is not one (or is zero)."""
    if not _WHOLE.match(text):
        return None
    total = timedelta()
    for amount, unit in _PART.findall(text):
        total += timedelta(**{_UNITS[unit.lower()]: int(amount)})
    return total if total > timedelta() else None


def format_duration(duration: timedelta) -> str:
    """``duration`` in the form ``parse_duration`` reads (``1d2h30m``); seconds are
    dropped, and a duration under a minute reads ``0m``."""
    minutes = int(duration.total_seconds()) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    return "".join(parts) or "0m"
