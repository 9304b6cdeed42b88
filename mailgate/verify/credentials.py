"""A login and password found in a mail, and what checking them gave: plain values.

The facts stage (worker processes) hands a ``Credential`` out once; the pure decision
reads a ``Check``.  Kept apart from ``verify.passwords`` so that neither imports the
hashing libraries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Credential:
    """A login and a password found together in one mail (never stored)."""

    login: str
    password: str = field(repr=False)  # never in a log line or a traceback


Outcome = Literal["verified", "failed", "suspended"]


@dataclass(frozen=True, slots=True)
class Check:
    """What checking a mail's password gave, without the password."""

    login: str  # lower-cased
    outcome: Outcome  # suspended: too many recent failures, not even tried
