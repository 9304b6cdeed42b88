"""Spam verdicts, read: from the headers our MTA's filter wrote, or from rspamd's answer.

Pure functions over decoded headers and the scan recorded with the stored row (see
``ingest.scan``).  Only *positive* verdicts come out of here: a sender gains nothing by
writing ``X-Spam-Flag: YES`` into his own mail, and a negative verdict (``X-Spam: No``)
could be forged by anyone, so it is never read.  ``policy.decide`` holds a message with
a ``Spam`` value in the quarantine, with ``Spam.reason`` as the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# rspamd's actions that mean "this is spam" (greylist and soft reject are about timing).
SPAM_ACTIONS = ("add header", "rewrite subject", "reject")
# The headers read (lower-cased names): SpamAssassin's, then rspamd's milter headers.
_READ = frozenset(
    {
        "x-spam-flag",
        "x-spam-status",
        "x-spam-score",
        "x-spam",
        "x-rspamd-action",
        "x-rspamd-score",
        "x-spamd-result",
    }
)
_SCORE = re.compile(r"\bscore=(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_SPAMD_RESULT = re.compile(r"^\s*default:\s*(true|false)\s*\[\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_SPAMD_ACTION = re.compile(r"\baction[:=]\s*(add header|rewrite subject|reject)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Spam:
    """A positive verdict: who said it (``header`` or ``rspamd``), what, and the score."""

    source: str  # header | rspamd
    verdict: str  # "X-Spam-Flag: YES", "add header", "reject" …
    score: float | None = None

    @property
    def reason(self) -> str:
        """The quarantine reason: ``spam`` first, then the verdict and the score."""
        score = f" score={self.score:.2f}" if self.score is not None else ""
        return f"spam: {self.verdict}{score}"[:64]

    @property
    def hit(self) -> str:
        verdict = self.verdict.lower().replace(": ", "=").replace(" ", "-")
        return f"spam:{self.source}:{verdict}"  # spam:header:x-spam-flag=yes


def from_headers(headers: Iterable[tuple[str, str]]) -> Spam | None:
    """The first positive verdict among SpamAssassin's and rspamd's headers, or None."""
    found = [(name, value.strip()) for name, value in headers if name in _READ]
    score = _header_score(found)
    for name, value in found:
        low = value.lower()
        if name == "x-spam-flag" and low == "yes":
            return Spam("header", "X-Spam-Flag: YES", score)
        if name == "x-spam-status" and low.startswith("yes"):
            return Spam("header", "X-Spam-Status: Yes", score)
        if name == "x-spam" and low == "yes":
            return Spam("header", "X-Spam: Yes", score)
    for name, value in found:
        low = value.lower()
        if name == "x-rspamd-action" and low in SPAM_ACTIONS:
            return Spam("header", low, score)
        if name == "x-spamd-result":
            action = _SPAMD_ACTION.search(value)
            result = _SPAMD_RESULT.match(value)
            if action:
                return Spam("header", action.group(1).lower(), score)
            if result and result.group(1).lower() == "true":
                return Spam("header", "X-Spamd-Result: True", score)
    return None


def _header_score(found: list[tuple[str, str]]) -> float | None:
    for name, value in found:
        if name == "x-spam-status" and (m := _SCORE.search(value)):
            return float(m.group(1))
        if name == "x-spamd-result" and (m := _SPAMD_RESULT.match(value)):
            return float(m.group(2))
        if name in ("x-spam-score", "x-rspamd-score"):
            try:
                return float(value)
            except ValueError:
                continue
    return None


def from_scan(scan: Mapping[str, Any] | None) -> Spam | None:
    """rspamd's answer as recorded with the stored row, when it says spam."""
    if not scan or scan.get("action") not in SPAM_ACTIONS:
        return None
    score = scan.get("score")
    return Spam("rspamd", str(scan["action"]), float(score) if score is not None else None)
