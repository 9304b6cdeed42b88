"""[[rules]]: loading lists every problem at once; evaluation is ordered, all-must-match,
stops at a quarantine, and a catastrophic pattern runs out of its time budget instead
of stalling the pipeline."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mailgate import config
from mailgate.config import Rule
from mailgate.errors import ConfigError
from mailgate.pipeline import rules
from mailgate.pipeline.spam import from_headers, from_scan


def build(*tables: dict[str, Any]) -> config.Settings:
    return config.build({"rules": list(tables)}, environ={})


def test_rules_load_in_file_order_with_dotted_header_keys() -> None:
    settings = config.build(
        {
            "rules": [
                {
                    "name": "partner abuse reports",
                    "match": {"from": r"@partner\.example$", "subject": "(?i)abuse"},
                    "then": {"queue": "abuse", "priority": "high", "acknowledge": False},
                },
                {
                    "name": "monitoring",
                    "match": {"header": {"x-mailer": "^Zabbix"}},
                    "then": {"quarantine": "monitoring noise"},
                },
            ]
        },
        environ={},
    )
    first, second = settings.rules
    assert first == Rule(
        "partner abuse reports",
        (("from", r"@partner\.example$"), ("subject", "(?i)abuse")),
        queue="abuse",
        priority="high",
        acknowledge=False,
    )
    assert second.match == (("header.x-mailer", "^Zabbix"),)
    assert second.quarantine == "monitoring noise"


def test_every_problem_of_every_rule_is_listed() -> None:
    with pytest.raises(ConfigError) as err:
        build(
            {
                "name": "bad",
                "match": {"from": "([unclosed", "colour": "x", "subject": 3},
                "then": {"queue": "nowhere", "priority": "urgent", "acknowledge": "no"},
                "when": "always",
            },
            {"match": {}, "then": {"sing": True}},
            {"name": "bad", "match": {"body": "x"}, "then": {"quarantine": ""}},
        )
    text = str(err.value)
    for expected in (
        "rules[0] (bad).match.from: bad regex '([unclosed'",
        "rules[0] (bad).match: unknown key 'colour'",
        "rules[0] (bad).match.subject: expected a regex string",
        "rules[0] (bad).then.queue: 'nowhere' is not a queue",
        "rules[0] (bad).then.priority: 'urgent' is not high or normal",
        "rules[0] (bad).then.acknowledge: expected true or false",
        "rules[0] (bad): unknown key 'when'",
        "rules[1].name: required",
        "rules[1].match: required",
        "rules[1].then: unknown key 'sing'",
        "rules[2] (bad): name is used by more than one rule",
        "rules[2] (bad).then.quarantine: a reason of 1-48 characters",
    ):
        assert expected in text, expected


TARGET = rules.Target(
    from_="ops@partner.example",
    sender="bounce@partner.example",
    to=("abuse@helpdesk.example",),
    subject="Abuse report 17",
    body="Spam seen from 192.0.2.7",
    headers=(("x-mailer", "Reporter 2.0"),),
)


def rule(name: str, **kw: Any) -> Rule:
    match = kw.pop("match")
    return Rule(name, tuple(match.items()), **kw)


def test_every_matching_rule_applies_in_order_and_all_keys_must_match() -> None:
    outcome = rules.evaluate(
        (
            rule("queue", match={"from": "@partner", "subject": "(?i)abuse"}, queue="abuse"),
            rule("no match", match={"from": "@partner", "subject": "invoice"}, queue="billing"),
            rule("silence", match={"header.x-mailer": "^Reporter"}, acknowledge=False),
            rule("later queue", match={"to": "^abuse@", "sender": "^bounce@"}, queue="technical"),
            rule("prio", match={"body": r"192\.0\.2\.\d+"}, priority="high"),
        ),
        TARGET,
    )
    assert outcome.hits == ("rule:queue", "rule:silence", "rule:later queue", "rule:prio")
    assert outcome.queue == "technical"
    assert outcome.acknowledge is False
    assert (outcome.priority, outcome.priority_rule) == ("high", "prio")
    assert outcome.quarantine is None


def test_a_quarantine_ends_the_walk() -> None:
    outcome = rules.evaluate(
        (
            rule("hold", match={"from": "@partner"}, quarantine="blocked sender"),
            rule("never", match={"from": "@partner"}, queue="billing"),
        ),
        TARGET,
    )
    assert outcome.hits == ("rule:hold",)
    assert outcome.quarantine == "blocked sender" and outcome.queue is None


def test_a_catastrophic_pattern_runs_out_of_time_not_the_pipeline() -> None:
    hostile = rules.Target("", "", (), "", "a" * 50_000 + "!", ())
    start = time.monotonic()
    outcome = rules.evaluate(
        (
            rule("evil", match={"body": r"^(a|aa)+$"}, quarantine="never"),
            rule("fine", match={"body": "!$"}, queue="abuse"),
        ),
        hostile,
    )
    assert time.monotonic() - start < 2
    assert outcome.hits == ("rule-timeout:evil", "rule:fine")
    assert outcome.quarantine is None and outcome.queue == "abuse"


def test_only_positive_spam_verdicts_are_read() -> None:
    assert from_headers([("x-spam-flag", "NO"), ("x-spam-status", "No, score=9.0")]) is None
    assert from_headers([("x-spam", "no"), ("x-rspamd-action", "no action")]) is None
    spam = from_headers([("x-spam-status", "Yes, score=9.5 required=5.0")])
    assert spam is not None and spam.reason == "spam: X-Spam-Status: Yes score=9.50"
    assert from_scan({"action": "greylist", "score": 4.0}) is None
    assert from_scan({"unscanned": "timeout"}) is None
    held = from_scan({"action": "add header", "score": 7.25})
    assert held is not None and held.reason == "spam: add header score=7.25"
