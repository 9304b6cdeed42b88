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
