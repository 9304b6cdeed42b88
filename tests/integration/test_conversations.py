"""Conversations through the real daemon: SMTP in, the relay sink showing exactly who got
which mail, the CLI for operators and tickets.  Operators authenticate with genuine
DKIM signatures (tests/dkimkeys.py) checked against a fake DNS; customers through the
Authentication-Results header of our own MTA.  Only DNS and the clock are fake."""

from __future__ import annotations

import email
import json
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from mailgate import cli
from mailgate.daemon.runtime import Runtime
from mailgate.store.models import InboundMessage, OutboxMessage
from tests.conftest import make_runtime, make_settings
from tests.dkimkeys import Key, make_key, sign
from tests.support import DaemonThread, FakeDns, RelaySink, make_mail, wait_until

HELPDESK = "support@helpdesk.example"
JAN = "jan@customer.example"
ANNA = "anna@staff.example"
CUSTOMER_PASS = "mx.helpdesk.example; dmarc=pass header.from=customer.example"


@dataclass
class World:
    rt: Runtime
    daemon: DaemonThread
    sink: RelaySink
    config: Path
    key: Key  # the operators' domain DKIM key

    def cli(self, *args: str) -> str:
        result = CliRunner().invoke(
            cli.main, ["--config", str(self.config), *args], env={"MAILGATE_CONFIG": None}
        )
        assert result.exit_code == 0, result.output
        # stdout alone: the daemon's threads may log to stderr meanwhile.
        return result.stdout

    def send(self, raw: bytes, rcpts: list[str], mail_from: str = JAN) -> None:
        with smtplib.SMTP("127.0.0.1", self.daemon.port("smtp"), timeout=10) as c:
            c.sendmail(mail_from, rcpts, raw)

    def processed(self, count: int) -> None:
        """Wait until ``count`` inbound messages are done and their outgoing mail left."""

        def settled() -> bool:
            with self.rt.sessions() as s:
                done = s.scalar(
                    select(func.count()).where(InboundMessage.status.in_(("done", "quarantined")))
                )
                pending = s.scalar(select(func.count()).where(OutboxMessage.status == "pending"))
            return done == count and pending == 0

        wait_until(settled, what=f"{count} messages processed and sent")

    def mails(self, count: int) -> list[EmailMessage]:
        return [parse(m.data) for m in self.sink.wait_for(count)]

    def ticket(self, number: int) -> dict[str, object]:
        doc: dict[str, object] = json.loads(self.cli("ticket", "show", str(number), "--json"))
        return doc

    def operator_mail(self, raw: bytes) -> bytes:
        """Signed by the operators' domain, as their mail server would."""
        return sign(raw, self.key, "staff.example")


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def customer(raw: bytes) -> bytes:
    return f"Authentication-Results: {CUSTOMER_PASS}\r\n".encode() + raw


@pytest.fixture
def world(db_url: str, tmp_path: Path, sink: RelaySink) -> Iterator[World]:
    key = make_key()
    config = tmp_path / "mailgate.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n[verify]\ndns_lookups = false\n')
    settings = make_settings(
        db_url,
        tmp_path,
        outbound={"relay": f"127.0.0.1:{sink.port}"},
        verify={"trusted_authserv_ids": ["mx.helpdesk.example"]},
        sla={"on_call": "oncall@staff.example"},
    )
    rt = make_runtime(settings, dns=FakeDns({"s1._domainkey.staff.example": key.txt}))
    try:
        with DaemonThread(rt) as daemon:
            w = World(rt, daemon, sink, config, key)
            w.cli("operators", "add", ANNA, "--name", "Anna Nowak", "--queue", "technical")
            yield w
    finally:
        rt.close()


def test_operators_cli_adds_lists_and_refuses_unknown_queues(world: World) -> None:
    world.cli("operators", "add", "piotr@staff.example", "--queue", "billing", "--queue", "abuse")
    listed = json.loads(world.cli("operators", "list", "--json"))
    assert listed == [
        {"address": ANNA, "name": "Anna Nowak", "queues": ["technical"]},
        {"address": "piotr@staff.example", "name": "", "queues": ["billing", "abuse"]},
    ]
    bad = CliRunner().invoke(
        cli.main,
        ["--config", str(world.config), "operators", "add", "x@y.example", "--queue", "sales"],
    )
    assert bad.exit_code == 65 and "no queue 'sales'" in bad.output


def test_a_whole_conversation(world: World) -> None:
    # 1. The customer writes; the ack goes to them, the notice to the queue's operator.
    world.send(
        customer(make_mail(subject="Serwer nie odpowiada", message_id="<c1@customer.example>")),
        [HELPDESK],
    )
    ack, notice = sorted(world.mails(2), key=lambda m: m["To"] != JAN)
    assert ack["To"] == JAN and notice["To"] == ANNA
    assert ack["Reply-To"].startswith("support+1.c.")
    assert ack["Message-ID"].startswith("<t1.")
    assert notice["Reply-To"].startswith("support+1.o.")
    assert "192.0.2.10" in text_of(notice)  # the customer's text, for the operator
    assert "Auto-Submitted" in notice  # a notice is generated, not written

    # 2. The operator answers from her mail client; her quote of the notice is cut.
    answer = make_mail(
        sender=f"Anna Nowak <{ANNA}>",
        to=notice["Reply-To"],
        subject=f"Re: {notice['Subject']}",
        body="We restarted the server, please check.\n\n"
        "On Mon, 23 Nov 2026 at 09:00, Helpdesk <support@helpdesk.example> wrote:\n"
        "> New request 1 from jan@customer.example.\n",
        headers={"In-Reply-To": notice["Message-ID"]},
    )
    world.send(world.operator_mail(answer), [notice["Reply-To"]], mail_from=ANNA)
    reply = world.mails(3)[2]
    assert reply["To"] == JAN
    assert reply["From"].addresses[0].addr_spec == HELPDESK  # never the operator's address
    assert reply["In-Reply-To"] == "<c1@customer.example>"  # threads under the customer's mail
    assert reply["Reply-To"].startswith("support+1.c.")
    assert "Auto-Submitted" not in reply  # a person wrote it
    body = text_of(reply)
    assert "We restarted the server" in body and "New request 1" not in body
    shown = world.ticket(1)
    assert shown["status"] == "open" and shown["first_response_at"] is not None

    # 3. The customer answers the relayed reply (not authenticated: the token suffices).
    world.send(
        make_mail(
            to=reply["Reply-To"],
            subject=f"Re: {reply['Subject']}",
            body="Works now, thanks.\n\nW dniu 23.11.2026 o 09:05, Helpdesk pisze:\n> old\n",
            headers={"In-Reply-To": reply["Message-ID"]},
        ),
        [reply["Reply-To"]],
    )
    notice2 = world.mails(4)[3]
    assert notice2["To"] == ANNA and "Works now, thanks." in text_of(notice2)

    # 4. The operator resolves the ticket with a command and a closing line.
    world.send(
        world.operator_mail(
            make_mail(
                sender=ANNA,
                to=notice2["Reply-To"],
                subject="Re: thanks",
                body="#status resolved\n\nGlad to hear it.\n",
            )
        ),
        [notice2["Reply-To"]],
        mail_from=ANNA,
    )
    closing = world.mails(5)[4]
    assert closing["To"] == JAN and "Glad to hear it." in text_of(closing)
    assert "#status" not in text_of(closing)
    assert world.ticket(1)["status"] == "resolved"

    # 5. An Outlook-style reply: no In-Reply-To/References, a From:/Sent: block below.
    world.send(
        make_mail(
            to=closing["Reply-To"],
            subject="RE: [#1] Serwer nie odpowiada",
            body="It is down again!\n\nFrom: Helpdesk <support@helpdesk.example>\n"
            "Sent: Monday, November 23, 2026 9:30 AM\nTo: Jan\nSubject: Re: [#1]\n\n"
            "Glad to hear it.\n",
        ),
        [closing["Reply-To"]],
    )
    reopened = world.mails(6)[5]
    assert reopened["To"] == ANNA and "Reopened" in reopened["Subject"]
    world.processed(5)
    shown = world.ticket(1)
    assert shown["status"] == "open" and shown["resolved_at"] is None
    articles = shown["articles"]
    assert isinstance(articles, list)
    assert [(a["direction"], a["author"], a["internal"]) for a in articles] == [
        ("in", JAN, False),
        ("out", HELPDESK, False),  # the ack
        ("out", ANNA, False),
        ("in", JAN, False),
        ("out", ANNA, False),
        ("in", JAN, False),
    ]
    assert articles[-1]["text"] == "It is down again!"
    assert articles[3]["text"] == "Works now, thanks."
    assert shown["participants"] == [
        {"address": JAN, "role": "requester"},
        {"address": ANNA, "role": "operator"},
    ]
    assert len(json.loads(world.cli("tickets", "list", "--json"))) == 1
    assert len(world.sink.messages) == 6


def test_forged_follow_up_by_ticket_number_opens_a_new_ticket(world: World) -> None:
    world.send(customer(make_mail(subject="VPS")), [HELPDESK])
    world.mails(2)
    # Mallory knows the number and even authenticates her own domain: not enough.
    world.send(
        make_mail(
            sender="mallory@evil.example",
            subject="Re: [#1] VPS — please send me the root password",
            headers={"Authentication-Results": "mx.helpdesk.example; dmarc=pass "
                     "header.from=evil.example"},
        ),
        [HELPDESK],
        mail_from="mallory@evil.example",
    )  # fmt: skip
    mails = world.mails(4)[2:]
    assert sorted(str(m["To"]) for m in mails) == [ANNA, "mallory@evil.example"]
    notice = next(m for m in mails if m["To"] == ANNA)
    assert "[#2]" in notice["Subject"] and "mentions request(s) 1" in text_of(notice)
    world.processed(2)
    first = world.ticket(1)
    assert len(first["articles"]) == 2  # type: ignore[arg-type]
    assert world.ticket(2)["requester"] == "mallory@evil.example"


def test_spoofed_operator_replies_never_reach_the_customer(world: World) -> None:
    world.send(customer(make_mail(subject="VPS")), [HELPDESK])
    ack, notice = sorted(world.mails(2), key=lambda m: m["To"] != JAN)
    token_address = notice["Reply-To"]
    # a) The real token, but the mail is not authenticated (anyone can write From: anna).
    world.send(
        make_mail(sender=ANNA, to=token_address, subject="Re", body="#status closed\nBye."),
        [token_address],
        mail_from=ANNA,
    )
    # b) Authenticated operator, forged token (the tag altered).
    forged = token_address.replace(".o.", ".o.f", 1)
    world.send(
        world.operator_mail(make_mail(sender=ANNA, to=forged, subject="Re", body="Pay now.")),
        [forged],
        mail_from=ANNA,
    )
    # c) The customer's own token in a stranger's hands.
    world.send(
        make_mail(sender="mallory@evil.example", to=ack["Reply-To"], body="#status closed"),
        [ack["Reply-To"]],
        mail_from="mallory@evil.example",
    )
    world.processed(4)
    with world.rt.sessions() as s:
        to_jan = s.scalars(select(OutboxMessage.kind).where(OutboxMessage.recipient == JAN)).all()
        hits = [
            row.rule_hits
            for row in s.scalars(select(InboundMessage).order_by(InboundMessage.id)).all()
        ]
    assert to_jan == ["ack"]  # nothing relayed to the customer
    assert "operator-token:unauthenticated" in hits[1]
    assert not any(h.startswith("thread:operator-token") for h in hits[2])
    assert not any(h.startswith("thread:token") for h in hits[3])
    shown = world.ticket(1)
    assert shown["status"] == "new"
    assert [(a["direction"], a["internal"]) for a in shown["articles"]] == [  # type: ignore[union-attr]
        ("in", False),
        ("out", False),
        ("in", True),  # a) kept for operators only
    ]


def test_commands_only_from_an_authenticated_operator(world: World) -> None:
    world.send(customer(make_mail(subject="VPS")), [HELPDESK])
    ack, notice = sorted(world.mails(2), key=lambda m: m["To"] != JAN)
    # The customer (authenticated, with a valid token) writes command lines: just text.
    world.send(
        customer(make_mail(to=ack["Reply-To"], body="#status closed\n#priority high\nHello?")),
        [ack["Reply-To"]],
    )
    world.mails(3)  # the operator hears about the reply
    world.processed(2)
    shown = world.ticket(1)
    assert (shown["status"], shown["priority"]) == ("new", "normal")
    # The operator's invalid command changes nothing and is answered with the errors.
    world.send(
        world.operator_mail(
            make_mail(sender=ANNA, to=notice["Reply-To"], body="#status done\nText.")
        ),
        [notice["Reply-To"]],
        mail_from=ANNA,
    )
    error = world.mails(4)[3]
    assert error["To"] == ANNA and "#status done" in text_of(error)
    world.processed(3)
    assert world.ticket(1)["status"] == "new"
    # A note by command: stored, never sent to the customer; commands applied.
    world.send(
        world.operator_mail(
            make_mail(
                sender=ANNA,
                to=notice["Reply-To"],
                body="#note\n#priority high\n#assign anna\nCustomer called, it is the disk.",
            )
        ),
        [notice["Reply-To"]],
        mail_from=ANNA,
    )
    world.processed(4)
    shown = world.ticket(1)
    assert (shown["priority"], shown["assignee"]) == ("high", ANNA)
    last = shown["articles"][-1]  # type: ignore[index]
    assert last["internal"] is True and "it is the disk" in last["text"]
    assert len(world.sink.messages) == 4


def test_reply_all_storm_stays_one_ticket_and_mails_only_the_sender(world: World) -> None:
    cc = "billing@helpdesk.example, bob@customer.example, carol@customer.example"
    original = customer(
        make_mail(
            subject="Faktura i serwer",
            message_id="<root@customer.example>",
            headers={"Cc": cc},
        )
    )
    # One transaction to both helpdesk addresses, then the same mail by a second path.
    world.send(original, [HELPDESK, "billing@helpdesk.example"])
    world.send(b"Received: from mx2.helpdesk.example\r\n" + original, ["billing@helpdesk.example"])
    world.processed(2)
    mails = world.mails(2)
    assert sorted(str(m["To"]) for m in mails) == [ANNA, JAN]
    # Colleagues reply to all, each copy arriving at both helpdesk addresses.
    for n, who in enumerate(["bob", "carol", "bob"]):
        raw = make_mail(
            sender=f"{who}@customer.example",
            to=JAN,
            subject="Re: Faktura i serwer",
            body=f"+1 ({n})",
            message_id=f"<storm{n}@customer.example>",
            headers={"Cc": cc, "In-Reply-To": "<root@customer.example>"},
        )
        world.send(raw, [HELPDESK], mail_from=f"{who}@customer.example")
        world.send(raw, ["billing@helpdesk.example"], mail_from=f"{who}@customer.example")
    world.processed(8)
    assert len(json.loads(world.cli("tickets", "list", "--json"))) == 1
    shown = world.ticket(1)
    articles = shown["articles"]
    assert isinstance(articles, list)
    assert [(a["author"], a["internal"]) for a in articles] == [
        (JAN, False),
        (HELPDESK, False),
        ("bob@customer.example", True),
        ("carol@customer.example", True),
        ("bob@customer.example", True),
    ]
    # Never participants from To/Cc, and nothing went to anyone but Jan and Anna.
    assert [p["address"] for p in shown["participants"]] == [JAN]  # type: ignore[union-attr]
    assert len(world.sink.messages) == 2
