"""Fault-injection scenarios: the scale they run at and the figures they report.

``make test`` runs every scenario in its short form (small message counts, so the
whole directory costs well under two minutes); ``make faults`` sets
``MAILGATE_FAULTS=full`` for the long runs the issue asks for.  Scenarios never fail
on a time or a rate: they print those figures at the end of the session, and fail
only on a lost or duplicated message, a broken database or a wrong reply code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pytest

# The real Dovecot of tests/imap, for the IMAP scenario.
from tests.imap.conftest import dovecot, imap_settings, user  # noqa: F401

FULL = os.environ.get("MAILGATE_FAULTS", "") == "full"

_REPORTS: list[tuple[str, dict[str, Any]]] = []


@dataclass
class Figures:
    """What one scenario measured; printed in the terminal summary."""

    scenario: str
    values: dict[str, Any] = field(default_factory=dict)

    def __setitem__(self, key: str, value: Any) -> None:
        self.values[key] = value

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    found = Figures(request.node.name)
    _REPORTS.append((found.scenario, found.values))
    return found


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _REPORTS:
        return
    terminalreporter.section(f"fault-injection figures ({'full' if FULL else 'short'} form)")
    for name, values in _REPORTS:
        shown = ", ".join(
            f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
        )
        terminalreporter.write_line(f"{name}: {shown}")
