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
    assert unit["KillMode"] == "mixed"  # the workers stay until the daemon stops them
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["ExecStartPre"].endswith("mailgate check")
    # systemd must wait out the drain before it resorts to SIGKILL.
    assert int(unit["TimeoutStopSec"]) > Settings().daemon.shutdown_seconds


def test_postfix_doc_shows_an_authentication_results_header_that_passes() -> None:
    """The header and the authserv-id docs/postfix.md tells admins about authenticate
    an operator's mail, and a header from any other authserv-id does not."""
    import re
    import tomllib
    from datetime import UTC, datetime

    from mailgate.verify.authn import authenticate

    text = (DOCS / "postfix.md").read_text()
    header = re.search(r"```\n(Authentication-Results: .*?)\n```", text, re.S)
    toml = re.search(r"```toml\n(\[verify\].*?)```", text, re.S)
    assert header is not None and toml is not None
    name, _, value = header.group(1).partition(":")
    trusted = frozenset(tomllib.loads(toml.group(1))["verify"]["trusted_authserv_ids"])
    dev = tomllib.loads((DOCS.parent / "config" / "dev.toml").read_text())
    assert trusted <= set(dev["verify"]["trusted_authserv_ids"])

    def check(ids: frozenset[str]) -> str:
        return authenticate(
            b"From: anna@staff.example\r\n\r\nFixed.\r\n",
            "anna@staff.example",
            [(name, " ".join(value.split()))],
            trusted_authserv_ids=ids,
            dnsfunc=lambda *_a, **_k: None,
            now=datetime.now(UTC),
        ).result

    assert check(trusted) == "pass"
    assert check(frozenset({"mx.elsewhere.example"})) != "pass"


def test_deploy_doc_lists_every_metric_and_every_verdict() -> None:
    """docs/deploy.md names each series /metrics serves and each verdict label."""
    import typing

    from mailgate.daemon.metrics import Metrics
    from mailgate.tickets.verdicts import Verdict

    text = (DOCS / "deploy.md").read_text()
    metrics = Metrics()
    names = set()
    for collector in list(metrics.registry._collector_to_names):
        for family in collector.collect():
            suffix = "_total" if family.type == "counter" else ""
            names.add(family.name + suffix)
    names |= {"mailgate_store_up", "mailgate_quarantine_messages"}  # read at scrape time
    missing = sorted(n for n in names if f"`{n}" not in text)
    assert not missing, f"docs/deploy.md does not list {missing}"
    verdicts = [v.__name__ for v in typing.get_args(Verdict)]
    table = next(line for line in text.splitlines() if "mailgate_processed_messages_total" in line)
    assert [v for v in verdicts if v not in table] == []
