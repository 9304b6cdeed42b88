"""The hostile-input property suite: its example budget and its outcome counts.

``make test`` runs a thousand examples; ``make fuzz`` sets
``MAILGATE_FUZZ_EXAMPLES`` (100 000 by default) for the dedicated run.  The number of
examples run and what became of them are printed at the end of the session.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

EXAMPLES = int(os.environ.get("MAILGATE_FUZZ_EXAMPLES", "1000"))

OUTCOMES: dict[str, Counter[str]] = {}


def count(stage: str, outcome: str) -> None:
    OUTCOMES.setdefault(stage, Counter())[outcome] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not OUTCOMES:
        return
    terminalreporter.section(f"hostile-input outcomes (budget {EXAMPLES} examples)")
    for stage, counts in OUTCOMES.items():
        shown = ", ".join(f"{k}={v}" for k, v in counts.most_common())
        terminalreporter.write_line(f"{stage}: {sum(counts.values())} run; {shown}")
