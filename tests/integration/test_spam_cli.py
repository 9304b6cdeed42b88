"""The quarantine from the command line: held spam listed by reason, released whole
as not spam (it becomes a ticket and is answered), and rule hits on the ticket."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from mailgate import cli
from mailgate.daemon.runtime import Runtime
from mailgate.ingest.accept import Envelope, accept
from mailgate.pipeline.batches import run_pending
from mailgate.store.models import InboundMessage, OutboxMessage
from tests.conftest import make_runtime, make_settings
from tests.support import make_mail

ENV = Envelope("jan@customer.example", ("support@helpdesk.example",))
RULE = {
    "name": "vip",
    "match": {"subject": "(?i)contract"},
    "then": {"priority": "high"},
}


def invoke(config: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(
        cli.main, ["--config", str(config), *args], env={"MAILGATE_CONFIG": None}
    )
    assert result.exit_code == code, result.output
    return result.output


def drain(rt: Runtime) -> None:
    while run_pending(rt):
        pass


def test_held_spam_is_listed_and_released_whole(db_url: str, tmp_path: Path) -> None:
    # The real clock: the CLI's release makes the message due "now".
    rt = make_runtime(make_settings(db_url, tmp_path, rules=[RULE]))
    config = tmp_path / "cli.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n[outbound]\nmaildir = "{tmp_path}/sent"\n'
        '[[rules]]\nname = "vip"\nmatch = { subject = "(?i)contract" }\n'
        'then = { priority = "high" }\n'
    )
    try:
        raw = make_mail(subject="Contract renewal", headers={"X-Spam-Flag": "YES"})
        spam = accept(rt.sessions, raw, ENV, "smtp")
        two_froms = make_mail(sender="a@b.example").replace(
            b"From: a@b.example", b"From: a@b.example\r\nFrom: c@d.example"
        )
        accept(rt.sessions, two_froms, ENV, "smtp")
        drain(rt)
        held = json.loads(invoke(config, "quarantine", "list", "--reason", "spam", "--json"))
        assert [h["id"] for h in held] == [spam.inbound_id]
        assert held[0]["reason"].startswith("spam: X-Spam-Flag: YES")
        assert len(json.loads(invoke(config, "quarantine", "list", "--json"))) == 2
        assert "(1 quarantined)" in invoke(config, "quarantine", "list", "--reason", "spam")

        out = invoke(config, "quarantine", "release", str(spam.inbound_id))
        assert "1 message(s) released" in out
        drain(rt)
        with rt.sessions() as s:
            row = s.get_one(InboundMessage, spam.inbound_id)
            assert row.status == "done" and row.verdict == "OpenTicket"
            assert row.released_at is not None
            acks = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "ack")).all()
        assert len(acks) == 1
        ticket = json.loads(invoke(config, "ticket", "show", "1", "--json"))
        assert ticket["subject"] == "Contract renewal"
        assert ticket["priority"] == "high"
        [decided] = ticket["rule_hits"]
        assert [h for h in decided["hits"] if h.startswith("rule:")] == ["rule:vip"]
        assert invoke(config, "quarantine", "list", "--reason", "spam", "--json").strip() == "[]"
        # Released whole: the stored bytes are untouched and the article has the text.
        assert "Subject: Contract renewal" in invoke(
            config, "quarantine", "show", str(spam.inbound_id), "--raw"
        )
        assert "nie odpowiada od rana" in ticket["articles"][0]["text"]
        # Not in the quarantine (any more): refused with a reason, exit status 1.
        err = invoke(config, "quarantine", "release", str(spam.inbound_id), "999", code=1)
        assert f"{spam.inbound_id}: not in the quarantine" in err
        assert "999: not in the quarantine" in err
    finally:
        rt.close()
