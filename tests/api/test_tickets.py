"""The panel's work through the API: open, answer, note, change, list, read, download.

A real daemon on loopback, a real database and the relay sink: each test checks what
the customer and the operators receive by mail, not only what the API answers.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from mailgate.store.models import Article, Attachment, Blob, OutboxMessage, Ticket
from tests.api.client import CUSTOMER, OPERATOR, Api, running_api, walk
from tests.support import RelaySink, wait_until

REQUEST = {
    "account": "jkowalski",
    "from": CUSTOMER,
    "subject": "Please raise my PHP memory limit",
    "body": "To 512M on shop.customer.example, thank you.",
}


def count(api: Api, model: type) -> int:
    with api.rt.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_open_request_is_authorized_acknowledged_and_idempotent(
    db_url: str, tmp_path: Path, sink: RelaySink
) -> None:
    with running_api(db_url, tmp_path, relay_port=sink.port) as api:
        key = {"Idempotency-Key": "panel-req-1"}
        first = api.call("POST", "/tickets", REQUEST, headers=key)
        assert first.status == 201, first.body
        number = first.json["number"]
        # A retry (the panel lost the answer) gets the same ticket, not a second one.
        again = api.call("POST", "/tickets", REQUEST, headers=key)
        assert (again.status, again.json) == (201, {"number": number})
        assert again.headers.get("Idempotent-Replayed") == "true"
        # The same key for another request is refused; without a key, a new ticket.
        other = api.call("POST", "/tickets", {**REQUEST, "subject": "Other"}, headers=key)
        assert other.status == 422 and other.json["errors"][0]["field"] == "Idempotency-Key"
        assert count(api, Ticket) == 1
        doc = api.call("GET", f"/tickets/{number}").json
        assert doc["authorization"] == "authorized" and doc["account"] == "jkowalski"
        assert doc["requester"] == CUSTOMER and doc["status"] == "new"
        assert doc["language"] == "pl"  # the account's
        assert [(e["kind"], e["reason"]) for e in doc["events"]] == [("authorization", "api-token")]
        assert "'panel'" in doc["events"][0]["detail"]
        [asked] = [a for a in doc["articles"] if a["direction"] == "in"]
        assert asked["body_text"] == REQUEST["body"] and asked["author"] == CUSTOMER
        # The acknowledgement goes to the requester (the operator is told too).
        mails = sink.wait_for(2)
        ack = next(m for m in mails if m.rcpt_tos == [CUSTOMER])
        assert f"#{number}".encode() in ack.data
        assert any(m.rcpt_tos == [OPERATOR] for m in mails)


def test_from_must_be_the_accounts_and_fields_must_exist(db_url: str, tmp_path: Path) -> None:
    with running_api(db_url, tmp_path) as api:
        reply = api.call(
            "POST",
            "/tickets",
            {**REQUEST, "from": "mallory@evil.example", "queue": "nope"},
        )
        assert reply.status == 422
        assert {e["field"] for e in reply.json["errors"]} == {"from", "queue"}
        reply = api.call("POST", "/tickets", {**REQUEST, "account": "nobody"})
        assert reply.status == 422 and reply.json["errors"][0]["field"] == "account"
        assert count(api, Ticket) == 0


def test_reply_note_and_change_follow_the_mail_rules(
    db_url: str, tmp_path: Path, sink: RelaySink
) -> None:
    with running_api(db_url, tmp_path, relay_port=sink.port) as api:
        number = api.call("POST", "/tickets", REQUEST).json["number"]
        sink.wait_for(2)  # acknowledgement and operator notice
        path = f"/tickets/{number}"
        # Only an operator may answer; everything wrong is listed at once.
        bad = api.call("POST", path + "/replies", {"author": CUSTOMER, "body": " "})
        assert bad.status == 422
        assert {e["field"] for e in bad.json["errors"]} == {"author", "body"}
        answer = {"author": OPERATOR, "body": "Done: memory_limit is 512M now."}
        key = {"Idempotency-Key": "reply-1"}
        made = api.call("POST", path + "/replies", answer, headers=key)
        assert made.status == 201
        assert api.call("POST", path + "/replies", answer, headers=key).json == made.json
        mails = sink.wait_for(3)
        assert len(mails) == 3  # one reply, though asked twice
        assert mails[2].rcpt_tos == [CUSTOMER] and b"512M now" in mails[2].data
        assert f"#{number}".encode() in mails[2].data
        note = api.call("POST", path + "/notes", {"author": OPERATOR, "body": "checked php.ini"})
        assert note.status == 201
        doc = api.call("GET", path).json
        assert doc["status"] == "open" and doc["first_response_at"] is not None
        by_id = {a["id"]: a for a in doc["articles"]}
        assert by_id[made.json["id"]]["internal"] is False
        assert by_id[made.json["id"]]["author"] == OPERATOR
        assert by_id[note.json["id"]]["internal"] is True
        # PATCH: the e-mail commands' rules (no status "new", known queues and operators).
        bad = api.call("PATCH", path, {"status": "new", "colour": "red"})
        assert bad.status == 422
        assert {e["field"] for e in bad.json["errors"]} == {"status", "colour"}
        bad = api.call("PATCH", path, {"status": "closed", "queue": "nope", "assignee": "bob"})
        assert bad.status == 422
        assert {e["field"] for e in bad.json["errors"]} == {"queue", "assignee"}
        changed = api.call(
            "PATCH", path, {"status": "resolved", "priority": "high", "assignee": "Ola"}
        )
        assert changed.status == 200, changed.body
        assert changed.json["status"] == "resolved" and changed.json["assignee"] == OPERATOR
        assert changed.json["priority_reason"] == "operator:api:panel"
        assert changed.json["resolved_at"] is not None
        events = api.call("GET", path).json["events"]
        assert {e["reason"] for e in events if e["kind"] == "command"} == {
            "status",
            "priority",
            "assign",
        }
        assert api.call("POST", "/tickets/999/notes", answer).status == 404
        assert api.call("PATCH", "/tickets/999", {}).status == 404
        # The note mailed nobody: still three mails, all sent.
        wait_until(lambda: count_pending(api) == 0, what="outbox drained")
        assert len(sink.messages) == 3


def count_pending(api: Api) -> int:
    with api.rt.sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status == "pending")
            )
            or 0
        )


def test_concurrent_retries_make_one_ticket(db_url: str, tmp_path: Path) -> None:
    with running_api(db_url, tmp_path) as api:
        answers: list[int] = []

        def post() -> None:
            reply = api.call("POST", "/tickets", REQUEST, headers={"Idempotency-Key": "race"})
            answers.append(reply.json["number"])

        threads = [threading.Thread(target=post) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(answers) == 6 and len(set(answers)) == 1
        assert count(api, Ticket) == 1


def test_list_filters_and_cursor_pages(db_url: str, tmp_path: Path) -> None:
    with running_api(db_url, tmp_path) as api:
        numbers = [api.call("POST", "/tickets", REQUEST).json["number"] for _ in range(5)]
        api.call("PATCH", f"/tickets/{numbers[0]}", {"status": "pending"})
        assert walk(api, "/tickets", "number") == sorted(numbers, reverse=True)

        def listed(query: str) -> list[int]:
            reply = api.call("GET", "/tickets?" + query)
            assert reply.status == 200, reply.body
            return [t["number"] for t in reply.json["items"]]

        assert listed("status=pending") == [numbers[0]]
        assert len(listed("status=new")) == 4
        assert len(listed("account=jkowalski&queue=technical")) == 5
        assert listed("account=somebody-else") == []
        assert len(listed(f"requester={CUSTOMER.upper()}")) == 5
        later = (api.rt.clock() + timedelta(days=1)).isoformat()
        assert listed("updated_since=" + later.replace("+", "%2B")) == []
        assert len(listed("updated_since=2000-01-01T00:00:00Z")) == 5
        assert api.call("GET", "/tickets?updated_since=2000-01-01").status == 422


def test_attachment_is_a_download_never_a_page(db_url: str, tmp_path: Path) -> None:
    with running_api(db_url, tmp_path) as api:
        number = api.call("POST", "/tickets", REQUEST).json["number"]
        html = b"<script>alert(1)</script>"
        digest = hashlib.sha256(html).hexdigest()
        with api.rt.sessions.begin() as session:
            article = session.scalars(
                select(Article).join(Ticket).where(Ticket.number == number)
            ).first()
            assert article is not None
            session.add(Blob(sha256=digest, size=len(html), data=html))
            session.flush()
            row = Attachment(
                article_id=article.id,
                sha256=digest,
                filename='../../etc/"pass;wd\r\n.html',
                content_type="text/html",
                size=len(html),
            )
            session.add(row)
            session.flush()
            ident = row.id
        [listed] = api.call("GET", f"/tickets/{number}").json["articles"][0]["attachments"]
        assert listed["id"] == ident and listed["content_type"] == "text/html"
        reply = api.call("GET", f"/tickets/{number}/attachments/{ident}")
        assert reply.status == 200 and reply.body == html
        assert reply.headers["Content-Type"] == "application/octet-stream"
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["Content-Disposition"] == (
            "attachment; filename=\"passwd.html\"; filename*=UTF-8''passwd.html"
        )
        assert "sandbox" in reply.headers["Content-Security-Policy"]
        # Another ticket's number does not reach it; a purged one is gone.
        other = api.call("POST", "/tickets", REQUEST).json["number"]
        assert api.call("GET", f"/tickets/{other}/attachments/{ident}").status == 404
        with api.rt.sessions.begin() as session:
            session.get_one(Blob, digest).purged_at = api.rt.clock()
        assert api.call("GET", f"/tickets/{number}/attachments/{ident}").status == 410
