"""The quarantine through the API: held mail listed by reason a page at a time, and
released as not spam — it becomes a ticket once processed — with 404, 409 and 401."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from mailgate.ingest.accept import Envelope, accept
from mailgate.pipeline.batches import run_pending
from mailgate.store.models import InboundMessage, Ticket
from tests.api.client import Api, running_api, walk
from tests.support import make_mail

ENV = Envelope("jan@customer.example", ("support@helpdesk.example",))
# "Zażółć serwer" in an RFC 2047 encoded-word: the list shows it decoded.
ENCODED = "=?utf-8?b?WmHFvMOzxYLEhyBzZXJ3ZXI=?="


def drain(api: Api) -> None:
    while run_pending(api.rt):
        pass


def hold(api: Api) -> tuple[int, int, int]:
    """Two messages held as spam and one without a sender identity."""
    first = accept(
        api.rt.sessions, make_mail(subject=ENCODED, headers={"X-Spam-Flag": "YES"}), ENV, "smtp"
    )
    second = accept(
        api.rt.sessions,
        make_mail(subject="Cheap pills", headers={"X-Spam-Flag": "YES"}),
        ENV,
        "smtp",
    )
    two_froms = make_mail(sender="a@b.example").replace(
        b"From: a@b.example", b"From: a@b.example\r\nFrom: c@d.example"
    )
    third = accept(api.rt.sessions, two_froms, ENV, "smtp")
    drain(api)
    return first.inbound_id, second.inbound_id, third.inbound_id


def test_list_by_reason_and_pages(db_url: str, tmp_path: Path) -> None:
    with running_api(db_url, tmp_path) as api:
        spam, pills, no_sender = hold(api)
        reply = api.call("GET", "/quarantine")
        assert reply.status == 200, reply.body
        page = reply.json
        assert [m["id"] for m in page["items"]] == [spam, pills, no_sender]
        assert page["next"] is None
        first = page["items"][0]
        assert set(first) == {
            "id",
            "received_at",
            "mail_from",
            "rcpt_to",
            "subject",
            "reason",
            "attempts",
        }
        assert first["subject"] == "Zażółć serwer"
        assert first["mail_from"] == "jan@customer.example"
        assert first["rcpt_to"] == ["support@helpdesk.example"]
        assert first["reason"].startswith("spam: X-Spam-Flag: YES")
        assert page["items"][2]["reason"] == "no-sender-identity"
        # The reason filter is a prefix, as `quarantine list --reason`.
        spam_only = api.call("GET", "/quarantine?reason=spam").json
        assert [m["id"] for m in spam_only["items"]] == [spam, pills]
        assert api.call("GET", "/quarantine?reason=flood").json == {"items": [], "next": None}
        # Cursor pages, oldest first, each message once.
        assert walk(api, "/quarantine", "id") == [spam, pills, no_sender]
        assert api.call("GET", "/quarantine?cursor=nonsense").status == 422
        assert api.call("GET", "/quarantine?limit=0").status == 422


def test_release_makes_a_ticket_once(db_url: str, tmp_path: Path) -> None:
    with running_api(db_url, tmp_path) as api:
        spam, _, _ = hold(api)
        key = {"Idempotency-Key": "release-1"}
        reply = api.call("POST", f"/quarantine/{spam}/release", headers=key)
        assert (reply.status, reply.json) == (200, {"id": spam, "status": "received"})
        # A retry with the key gets the first answer, not a 409.
        again = api.call("POST", f"/quarantine/{spam}/release", headers=key)
        assert (again.status, again.json) == (200, {"id": spam, "status": "received"})
        assert again.headers.get("Idempotent-Replayed") == "true"
        with api.rt.sessions() as session:
            row = session.get_one(InboundMessage, spam)
            assert row.status == "received" and row.attempts == 0
            assert row.released_at is not None
        drain(api)
        with api.rt.sessions() as session:
            row = session.get_one(InboundMessage, spam)
            assert row.status == "done" and row.verdict == "OpenTicket"
            ticket = session.scalars(select(Ticket).where(Ticket.id == row.ticket_id)).one()
            number = ticket.number
        assert api.call("GET", f"/tickets/{number}").json["subject"] == "Zażółć serwer"
        assert spam not in [m["id"] for m in api.call("GET", "/quarantine").json["items"]]
        # Released already: no longer in the quarantine.
        refused = api.call("POST", f"/quarantine/{spam}/release")
        assert refused.status == 409
        assert refused.headers["Content-Type"].startswith("application/problem+json")
        assert "not in the quarantine" in refused.json["detail"]


def test_release_refusals(db_url: str, tmp_path: Path) -> None:
    with running_api(db_url, tmp_path) as api:
        _, pills, _ = hold(api)
        missing = api.call("POST", "/quarantine/999999/release")
        assert missing.status == 404 and missing.json["status"] == 404
        assert api.call("POST", f"/quarantine/{2**63}/release").status == 404
        with api.rt.sessions.begin() as session:
            session.get_one(InboundMessage, pills).purged_at = api.rt.clock()
        purged = api.call("POST", f"/quarantine/{pills}/release")
        assert purged.status == 409 and "purged on" in purged.json["detail"]
        with api.rt.sessions() as session:
            assert session.get_one(InboundMessage, pills).status == "quarantined"
        # Without a token: 401 for both, nothing released.
        assert api.call("GET", "/quarantine", token=None).status == 401
        unauthorized = api.call("POST", f"/quarantine/{pills}/release", token=None)
        assert unauthorized.status == 401
        assert unauthorized.headers["Content-Type"].startswith("application/problem+json")
