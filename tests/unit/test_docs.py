"""The deployment docs stay in step with what is tested: the Postfix snippets the e2e
suite loads are the ones docs/postfix.md shows, and the systemd unit matches the
daemon's signals and drain time."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailgate.config import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("snippet", ["main.cf", "master.cf", "mailgate-transport"])
def test_postfix_doc_shows_the_snippet_the_e2e_suite_runs(snippet: str) -> None:
    text = (DOCS / "postfix" / snippet).read_text()
    assert text in (DOCS / "postfix.md").read_text()


def test_systemd_unit_matches_the_daemon_lifecycle() -> None:
    unit = dict(
        line.split("=", 1)
        for line in (DOCS / "mailgate.service").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert unit["User"] == "mailgate"
    assert unit["KillSignal"] == "SIGTERM"
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["ExecStartPre"].endswith("mailgate check")
    # systemd must wait out the drain before it resorts to SIGKILL.
    assert int(unit["TimeoutStopSec"]) > Settings().daemon.shutdown_seconds
