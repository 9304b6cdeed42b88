"""The SIGKILL storm at full size, as a row of bench/run.py's table.

Runs tests/faults/test_sigkill_storm.py with ``MAILGATE_FAULTS=full`` (10 000 messages
from 8 retrying senders while ``mailgate serve`` is killed every 1–7 s and started
again) and reads the figures the test prints: the intake rate over the whole storm,
the slowest restart (SIGKILL → the new daemon's SMTP greeting) and the slowest return
to ``/readyz`` 200.  The test itself fails on a lost or duplicated message; here a
failed run is reported as such, with its figures if it printed any.
Targets: ≥ 150 msg/s, slowest restart ≤ 1 s, 0 lost, 0 duplicated.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from run import Row, at_least, at_most

ROOT = Path(__file__).resolve().parents[1]
FIGURES = re.compile(r"^test_sigkill_storm\S*: (.*)$", re.MULTILINE)


def run(full: bool = True) -> tuple[int, dict[str, str]]:
    """The test's exit status and its figures (name → printed value)."""
    env = {**os.environ, "MAILGATE_FAULTS": "full" if full else ""}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/faults/test_sigkill_storm.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )  # fmt: skip
    match = FIGURES.search(done.stdout)
    figures: dict[str, str] = {}
    if match:
        for item in re.split(r", (?=\w+=)", match.group(1)):
            name, _, value = item.partition("=")
            figures[name] = value
    return done.returncode, figures


def rows(full: bool = True) -> list[Row]:
    status, f = run(full)
    size = "full" if full else "short"
    if not f:
        return [
            Row(f"SIGKILL storm ({size})", f"no figures (pytest exit {status})", "", "", "NOT met")
        ]
    rate, restart = float(f["msg_per_s"]), float(f["restart_s_max"])
    ready = float(f.get("restart_to_ready_s_max", "nan"))
    clean = status == 0 and f.get("lost") == "0" and f.get("duplicated") == "0"
    return [
        Row(
            f"SIGKILL storm ({size}): {f['accepted']}/{f['sent']} accepted, {f['kills']} kills",
            f"{rate:.1f} msg/s; lost {f['lost']}, duplicated {f['duplicated']}"
            + ("" if status == 0 else f" (pytest exit {status})"),
            "≥ 150 msg/s, 0 lost, 0 dup",
            *(at_least(rate, 150.0) if clean else (f"{rate / 150:.2f}", "NOT met")),
        ),
        Row(
            "SIGKILL storm: slowest restart (SIGKILL → greeting)",
            f"{restart:.2f} s (→ /readyz 200: {ready:.2f} s; "
            f"drain after the storm {float(f['drain_after_storm_s']):.1f} s)",
            "≤ 1 s",
            *at_most(restart, 1.0),
        ),
    ]
