"""Spam at the door, through the pipeline: the MTA's filter verdicts hold a message
(no ticket, no acknowledgement, no operator notice), negative verdicts never act,
floods of new tickets are held, and the admin's [[rules]] route, silence or hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailgate.daemon.runtime import Runtime
from mailgate.store.models import OutboxMessage
from mailgate.tickets import operators, retention
from tests.conftest import make_runtime, make_settings
from tests.db.test_pipeline import deliver, inbound, sent_messages, tickets
from tests.support import FakeClock, make_mail


def add_operator(rt: Runtime) -> None:
    with rt.sessions.begin() as s:
        operators.add(s, "anna@helpdesk.example", "Anna", ["technical"], rt.clock())


def outbox_rows(rt: Runtime) -> list[OutboxMessage]:
    with rt.sessions() as s:
        return list(s.query(OutboxMessage).all())


@pytest.fixture
def make_rt(db_url: str, tmp_path: Path, clock: FakeClock) -> Any:
    made: list[Runtime] = []

    def build(**sections: Any) -> Runtime:
        rt = make_runtime(make_settings(db_url, tmp_path, **sections), clock)
        made.append(rt)
        return rt

    yield build
    for rt in made:
        rt.close()


SPAM_HEADERS = [
    ({"X-Spam-Flag": "YES", "X-Spam-Status": "Yes, score=7.3 required=5.0 tests=X"}, 7.3),
    ({"X-Spam-Status": "Yes, score=12.1 required=5.0"}, 12.1),
    ({"X-Spam": "Yes"}, None),
    ({"X-Rspamd-Action": "add header", "X-Rspamd-Score": "8.5"}, 8.5),
    ({"X-Rspamd-Action": "rewrite subject"}, None),
    ({"X-Spamd-Result": "default: True [15.00 / 15.00]; GTUBE(15.00)[]"}, 15.0),
]


@pytest.mark.parametrize(("headers", "score"), SPAM_HEADERS)
def test_positive_filter_verdict_holds_as_spam(
    make_rt: Any, headers: dict[str, str], score: float | None
) -> None:
    rt = make_rt()
    add_operator(rt)
    row_id = deliver(rt, make_mail(headers=headers))
    row = inbound(rt, row_id)
    assert row.status == "quarantined" and row.verdict == "Quarantine"
    assert row.reason is not None and row.reason.startswith("spam: ")
    if score is not None:
        assert f"score={score:.2f}" in row.reason
    assert any(h.startswith("spam:header:") for h in row.rule_hits)
    held = rt.metrics.registry.get_sample_value(
        "mailgate_spam_held_messages_total", {"source": "header"}
    )
    assert held == 1
    assert tickets(rt) == []
    assert outbox_rows(rt) == []  # no acknowledgement, no operator notice
    assert sent_messages(rt) == []


NEGATIVE = [
    {"X-Spam-Flag": "NO", "X-Spam-Status": "No, score=-1.0 required=5.0"},
    {"X-Spam": "No"},
    {"X-Rspamd-Action": "no action"},
    {"X-Rspamd-Action": "greylist"},
    {"X-Spamd-Result": "default: False [0.50 / 15.00]"},
]


@pytest.mark.parametrize("headers", NEGATIVE)
def test_negative_verdicts_change_nothing(make_rt: Any, headers: dict[str, str]) -> None:
    rt = make_rt()
    row = inbound(rt, deliver(rt, make_mail(headers=headers)))
    assert row.status == "done" and row.verdict == "OpenTicket"
    assert len(tickets(rt)) == 1


def test_headers_off_leaves_the_verdict_unread(make_rt: Any) -> None:
    rt = make_rt(spam={"headers": False})
    row = inbound(rt, deliver(rt, make_mail(headers={"X-Spam-Flag": "YES"})))
    assert row.verdict == "OpenTicket"


def test_spam_following_up_a_ticket_is_held_too(make_rt: Any) -> None:
    rt = make_rt()
    deliver(rt, make_mail(message_id="<first@customer.example>"))
    [ticket] = tickets(rt)
    reply = make_mail(
        subject=f"Re: [#{ticket.number}] Serwer nie odpowiada",
        headers={"In-Reply-To": "<first@customer.example>", "X-Spam-Flag": "YES"},
    )
    row = inbound(rt, deliver(rt, reply))
    assert row.status == "quarantined" and row.reason is not None
    assert row.reason.startswith("spam")
    assert row.ticket_id is None


def test_held_spam_is_purged_after_keep_days_never_earlier(make_rt: Any, clock: FakeClock) -> None:
    rt = make_rt(spam={"keep_days": 30}, retention={"days": 0})
    held = deliver(rt, make_mail(headers={"X-Spam-Flag": "YES"}))
    two_froms = make_mail(sender="a@b.example").replace(
        b"From: a@b.example", b"From: a@b.example\r\nFrom: c@d.example"
    )
    other = deliver(rt, two_froms)
    assert inbound(rt, other).status == "quarantined"  # not spam: two From headers
    clock.advance(days=29, hours=23)
    assert retention.purge(rt) == (0, 0)
    assert inbound(rt, held).raw != b""
    clock.advance(hours=2)
    assert retention.purge(rt) == (1, 0)
    row = inbound(rt, held)
    assert row.raw == b"" and row.purged_at == clock.now
    assert row.status == "quarantined"  # still listed, with its reason, but empty
    assert inbound(rt, other).raw != b""  # other holds wait for someone to deal with them


def test_flood_holds_new_tickets_beyond_the_hourly_limit(make_rt: Any, clock: FakeClock) -> None:
    rt = make_rt(spam={"new_tickets_per_sender_per_hour": 2})
    ids = [
        deliver(rt, make_mail(subject=f"Problem {i}", message_id=f"<p{i}@customer.example>"))
        for i in range(3)
    ]
    assert [inbound(rt, i).verdict for i in ids] == ["OpenTicket", "OpenTicket", "Quarantine"]
    flood = inbound(rt, ids[2])
    assert flood.reason is not None and flood.reason.startswith("flood")
    assert "flood:2/h" in flood.rule_hits
    assert rt.metrics.registry.get_sample_value("mailgate_flood_held_messages_total") == 1
    assert len(tickets(rt)) == 2
    acks = [m for m in outbox_rows(rt) if m.kind == "ack"]
    assert len(acks) == 2  # the held one got no answer
    # Follow-ups are never held, however many.
    first = tickets(rt)[0]
    for i in range(3):
        reply = make_mail(
            subject=f"Re: [#{first.number}] Problem 0 ({i})",
            headers={"In-Reply-To": "<p0@customer.example>"},
        )
        assert inbound(rt, deliver(rt, reply)).verdict == "AppendToTicket"
    # Another sender has an allowance of their own; an hour later this one has again.
    other = make_mail(sender="ewa@other.example", subject="Hello")
    assert inbound(rt, deliver(rt, other)).verdict == "OpenTicket"
    clock.advance(minutes=61)
    assert inbound(rt, deliver(rt, make_mail(subject="Later"))).verdict == "OpenTicket"


RULES = [
    {
        "name": "partner abuse reports",
        "match": {"from": r"@partner\.example$", "subject": "(?i)abuse"},
        "then": {"queue": "abuse", "priority": "high", "acknowledge": False},
    },
    {
        "name": "blocked sender",
        "match": {"from": r"@blocked\.example$"},
        "then": {"quarantine": "blocked sender"},
    },
]


def test_rules_route_silence_and_hold(make_rt: Any) -> None:
    rt = make_rt(rules=RULES)
    add_operator(rt)
    report = make_mail(sender="ops@partner.example", subject="ABUSE report")
    row = inbound(rt, deliver(rt, report))
    assert row.verdict == "OpenTicket" and "rule:partner abuse reports" in row.rule_hits
    [ticket] = tickets(rt)
    assert (ticket.queue, ticket.priority) == ("abuse", "high")
    assert ticket.priority_reason == "rule:partner abuse reports"
    assert [m.kind for m in outbox_rows(rt) if m.kind == "ack"] == []  # no answer
    blocked = inbound(rt, deliver(rt, make_mail(sender="x@blocked.example")))
    assert (blocked.status, blocked.reason) == ("quarantined", "blocked sender")
    assert "rule:blocked sender" in blocked.rule_hits
    assert len(tickets(rt)) == 1
    for name in ("partner abuse reports", "blocked sender"):
        hits = rt.metrics.registry.get_sample_value("mailgate_rule_hits_total", {"rule": name})
        assert hits == 1, name
