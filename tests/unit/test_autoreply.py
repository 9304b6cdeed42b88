"""autoreply.classify: RFC 3834 and vendor signals, lists, bulk, own mail, bounces."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailgate.errors import PermanentError
from mailgate.parse import parse
from mailgate.parse.autoreply import classify, parse_delivery_status
from mailgate.parse.message import Address, Bounce, Classification

MAIL = Path(__file__).resolve().parent.parent / "data" / "mail"
OWN = frozenset({"support@helpdesk.example", "billing@helpdesk.example"})
OWN_DOMAINS = frozenset({"helpdesk.example"})


def classify_fixture(name: str, envelope_from: str | None = None) -> Classification:
    raw = (MAIL / name).read_bytes()
    return classify(parse(raw), envelope_from, OWN, OWN_DOMAINS, raw=raw)


def message(headers: str, body: str = "Hello,\r\nplease help.\r\n") -> bytes:
    base = (
        "From: Eva <eva@zakaznik.example>\r\nTo: support@helpdesk.example\r\n"
        "Message-ID: <m1@zakaznik.example>\r\n"
    )
    return f"{base}{headers}\r\n{body}".encode()


def kind_of(headers: str, envelope_from: str | None = "eva@zakaznik.example") -> Classification:
    return classify(parse(message(headers)), envelope_from, OWN, OWN_DOMAINS)


# --------------------------------------------------------------------------- humans


def test_human_mail_is_human() -> None:
    assert classify_fixture("human.eml", "eva@zakaznik.example") == Classification("human", ())


@pytest.mark.parametrize(
    "name",
    ["reply_en.eml", "reply_pl.eml", "reply_sk.eml", "reply_cs.eml", "reply_ru.eml", "koi8r.eml"],
)
def test_replies_to_our_mail_stay_human(name: str) -> None:
    # They reference our Message-ID in In-Reply-To/References: that is not "own mail".
    assert classify_fixture(name, "someone@customer.example").kind == "human"


def test_customer_asking_about_autoreply_is_not_an_autoreply() -> None:
    assert kind_of("Subject: Autoreply not working in webmail\r\n").kind == "human"


# --------------------------------------------------------------------------- autoreplies


def test_auto_submitted() -> None:
    result = classify_fixture("auto_submitted.eml", "jan@firma.example")
    assert result.kind == "autoreply"
    assert result.reasons == ("auto-submitted:auto-replied", "precedence:bulk")
    assert kind_of("Auto-Submitted: auto-generated\r\n").reasons == (
        "auto-submitted:auto-generated",
    )
    assert kind_of("Auto-Submitted: No\r\n").kind == "human"


def test_x_autoreply() -> None:
    result = classify_fixture("x_autoreply.eml", "tom@customer.example")
    assert (result.kind, result.reasons) == ("autoreply", ("x-autoreply",))
    assert kind_of("X-Autorespond: yes\r\n").reasons == ("x-autorespond",)


@pytest.mark.parametrize(
    ("value", "reasons"),
    [
        ("All", ("x-auto-response-suppress:all",)),
        (
            "DR, OOF, AutoReply",
            ("x-auto-response-suppress:autoreply", "x-auto-response-suppress:oof"),
        ),
        ("DR, RN, NRN", ()),
    ],
)
def test_x_auto_response_suppress(value: str, reasons: tuple[str, ...]) -> None:
    result = kind_of(f"X-Auto-Response-Suppress: {value}\r\n")
    assert result.reasons == reasons
    assert result.kind == ("autoreply" if reasons else "human")


@pytest.mark.parametrize("name", ["oof_pl.eml", "oof_sk.eml", "oof_ru.eml"])
def test_out_of_office_subjects(name: str) -> None:
    result = classify_fixture(name, "person@customer.example")
    assert result.kind == "autoreply"
    assert "subject:autoreply" in result.reasons


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: [#1042] help",
        "Automatic reply: [#1042] help",
        "Autoreply",
        "Abwesenheitsnotiz",
    ],
)
def test_out_of_office_subjects_english_and_german(subject: str) -> None:
    assert kind_of(f"Subject: {subject}\r\n").reasons == ("subject:autoreply",)


def test_exchange_inbox_rules_loop_is_informational_only() -> None:
    result = kind_of("X-MS-Exchange-Inbox-Rules-Loop: eva@zakaznik.example\r\n")
    assert result == Classification("human", ("x-ms-exchange-inbox-rules-loop",))
    oof = classify_fixture("oof_pl.eml", "anna@firma.example")
    assert oof.reasons == ("subject:autoreply", "x-ms-exchange-inbox-rules-loop")


def test_null_envelope_without_bounce_signs_is_an_autoreply() -> None:
    for null in ("", "<>"):
        assert kind_of("Subject: Your request\r\n", null).reasons == ("envelope:null",)


def test_read_receipt_report_is_automatic() -> None:
    raw = message(
        "Subject: Read: help\r\nContent-Type: multipart/report;\r\n"
        ' report-type=disposition-notification; boundary="r"\r\n',
        "--r\r\nContent-Type: text/plain\r\n\r\nYour message was read.\r\n"
        "--r\r\nContent-Type: message/disposition-notification\r\n\r\n"
        "Final-Recipient: rfc822; eva@zakaznik.example\r\n"
        "Disposition: manual-action/MDN-sent-manually; displayed\r\n"
        "--r--\r\n",
    )
    result = classify(parse(raw), "eva@zakaznik.example")
    assert (result.kind, result.reasons) == ("autoreply", ("report:not-dsn",))


# --------------------------------------------------------------------------- lists, bulk, own


def test_mailing_list() -> None:
    result = classify_fixture("list.eml", "announce-bounces@lists.vendor.example")
    assert result == Classification("list", ("list-id", "list-unsubscribe", "precedence:list"))


def test_precedence_bulk_is_other() -> None:
    result = classify_fixture("bulk.eml", "bounce-123@shop.example")
    assert result == Classification("other", ("precedence:bulk",))
    assert kind_of("Precedence: junk\r\n").reasons == ("precedence:junk",)


def test_our_own_mail_coming_back() -> None:
    raw = (
        b"From: Helpdesk <Support@helpdesk.example>\r\nTo: x@y.example\r\n"
        b"Message-ID: <ticket-7.reply@mail.helpdesk.example>\r\nSubject: [#7] Re: x\r\n\r\nhi\r\n"
    )
    result = classify(parse(raw), "support@helpdesk.example", OWN, OWN_DOMAINS)
    assert result == Classification("other", ("own:from",))
    by_id = replace(parse(raw), from_=Address("", "x@y.example"), message_id="t-7@helpdesk.example")
    assert classify(by_id, None, OWN, OWN_DOMAINS) == Classification("other", ("own:message-id",))


def test_our_mail_back_through_a_forwarder_that_rewrote_the_message_id() -> None:
    raw = (
        b"From: Jan <jan@customer.example>\r\nTo: support@helpdesk.example\r\n"
        b"Message-ID: <fwd.1@forwarder.example>\r\nX-Loop: Support@helpdesk.example\r\n"
        b"Subject: [#7] Your request has been registered\r\n\r\nhi\r\n"
    )
    result = classify(parse(raw), "jan@customer.example", OWN, OWN_DOMAINS)
    assert result == Classification("other", ("own:x-loop",))
    # Somebody else's loop marker is not ours.
    other = raw.replace(b"Support@helpdesk.example", b"help@elsewhere.example")
    assert classify(parse(other), "jan@customer.example", OWN, OWN_DOMAINS).kind == "human"


def test_exim_failed_recipients_header_marks_a_bounce_only_from_a_daemon() -> None:
    headers = "Subject: Warning\r\nX-Failed-Recipients: a@x.example, b@y.example\r\n"
    bounce = kind_of(headers, envelope_from="")
    assert bounce.kind == "bounce"
    assert bounce.reasons[:2] == ("envelope:null", "x-failed-recipients")
    assert bounce.bounce is not None
    assert bounce.bounce.recipients == ("a@x.example", "b@y.example")
    assert bounce.bounce.action == "failed"
    assert kind_of(headers).kind == "human"  # a person's mail with that header is not


@pytest.mark.parametrize(
    "sender",
    [
        "noreply@bank.example",
        "no-reply@shop.example",
        "DoNotReply@x.example",
        "do_not_reply@x.example",
    ],
)
def test_noreply_senders(sender: str) -> None:
    raw = f"From: Robot <{sender}>\r\nSubject: Your invoice\r\n\r\nSee attachment.\r\n".encode()
    assert classify(parse(raw), sender) == Classification("other", ("sender:noreply",))


def test_stronger_rule_wins_over_noreply() -> None:
    raw = (
        b"From: noreply@x.example\r\nList-Id: <l.x.example>\r\n"
        b"Auto-Submitted: auto-generated\r\n\r\nx\r\n"
    )
    result = classify(parse(raw), "noreply@x.example")
    assert result.kind == "autoreply"
    assert result.reasons == ("auto-submitted:auto-generated", "list-id", "sender:noreply")


# --------------------------------------------------------------------------- bounces


def test_postfix_dsn() -> None:
    result = classify_fixture("dsn_postfix.eml", "")
    assert result.kind == "bounce"
    assert result.reasons[0] == "dsn:delivery-status"
    assert result.bounce == Bounce(
        recipients=("jan.novak@customer.example", "petra@customer.example"),
        status="5.1.1",
        action="failed",
        diagnostic="550 5.1.1 <jan.novak@customer.example>: Recipient address rejected: "
        "User unknown in virtual mailbox table",
    )


def test_delayed_dsn() -> None:
    result = classify_fixture("dsn_delayed.eml", "")
    assert result.kind == "report"  # issue 17: a delay warning is not a bounce
    assert result.bounce == Bounce(
        ("olga@slow.example",),
        "4.4.1",
        "delayed",
        "connect to mx.slow.example[203.0.113.9]:25: Connection timed out",
    )


def test_exchange_non_standard_ndr() -> None:
    result = classify_fixture("exchange_ndr.eml", "<>")
    assert result.kind == "bounce"
    assert result.reasons[:2] == ("envelope:null", "subject:bounce")
    assert result.bounce == Bounce(
        ("jan.novak@customer.example",), "5.1.1", "failed", "<EXCH01.customer.example #5.1.1>"
    )


def test_non_standard_bounce_without_raw_uses_the_body_regex() -> None:
    raw = (MAIL / "exchange_ndr.eml").read_bytes()
    result = classify(parse(raw), "<>")  # no raw bytes: flufl.bounce cannot run
    assert result.bounce is not None
    assert result.bounce.recipients[0] == "jan.novak@customer.example"
    assert result.bounce.status == "5.1.1"


def test_plain_text_bounce_from_mailer_daemon_by_from_header() -> None:
    raw = (
        b"From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example>\r\n"
        b"Subject: Mail delivery failed: returning message to sender\r\n\r\n"
        b"This message was created automatically by mail delivery software.\r\n\r\n"
        b"A message that you sent could not be delivered to one or more of its\r\n"
        b"recipients. This is a permanent error. The following address(es) failed:\r\n\r\n"
        b"  gone@customer.example\r\n"
        b"    host mx.customer.example [198.51.100.7]\r\n"
        b"    SMTP error from remote mail server after RCPT TO:<gone@customer.example>:\r\n"
        b"    550 5.1.1 <gone@customer.example>: User unknown\r\n"
    )
    result = classify(parse(raw), None)
    assert result.kind == "bounce"
    assert "from:mailer-daemon" in result.reasons
    assert result.bounce == Bounce(
        ("gone@customer.example",),
        "5.1.1",
        "failed",
        "550 5.1.1 <gone@customer.example>: User unknown",
    )


def test_bounce_subject_from_a_person_is_not_a_bounce() -> None:
    assert kind_of("Subject: Undeliverable mail to my colleague?\r\n").kind == "human"


def test_parse_delivery_status_takes_the_first_failed_recipient() -> None:
    text = (
        "Reporting-MTA: dns; mx.example\n\n"
        "Final-Recipient: rfc822; ok@a.example\nAction: delivered\nStatus: 2.0.0\n\n"
        "Final-Recipient: RFC822; <Late@B.Example>\nAction: delayed\nStatus: 4.4.7\n\n"
        "Original-Recipient: rfc822;alias@c.example\nFinal-Recipient: rfc822; real@c.example\n"
        "Action: failed\nStatus: 5.7.1 (delivery not authorized)\n"
    )
    assert parse_delivery_status(text) == Bounce(
        ("ok@a.example", "Late@b.example", "alias@c.example"), "5.7.1", "failed", None
    )
    assert parse_delivery_status("junk without fields") == Bounce((), None, None)


# --------------------------------------------------------------------------- properties


@settings(max_examples=200, deadline=None)
@given(
    raw=st.binary(max_size=2000),
    envelope=st.none()
    | st.sampled_from(["", "<>", "MAILER-DAEMON@x", "a@b"])
    | st.text(max_size=30),
)
def test_classify_never_raises(raw: bytes, envelope: str | None) -> None:
    for prefix in (
        b"",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n",
    ):
        try:
            parsed = parse(prefix + raw)
        except PermanentError:
            continue
        result = classify(parsed, envelope, OWN, OWN_DOMAINS, raw=prefix + raw)
        assert result.kind in ("human", "autoreply", "bounce", "list", "other")


@settings(max_examples=200, deadline=None)
@given(
    subject=st.text(max_size=80),
    headers=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "auto-submitted",
                    "precedence",
                    "x-auto-response-suppress",
                    "list-id",
                    "return-path",
                ]
            ),
            st.text(max_size=40),
        ),
        max_size=5,
    ),
    delivery_status=st.none() | st.text(max_size=300),
)
def test_classify_never_raises_on_arbitrary_values(
    subject: str, headers: list[tuple[str, str]], delivery_status: str | None
) -> None:
    base = parse((MAIL / "human.eml").read_bytes())
    msg = replace(
        base,
        subject=subject,
        headers=tuple(headers),
        content_type="multipart/report",
        delivery_status=delivery_status,
        body_text=subject * 3,
    )
    assert classify(msg, None).kind in ("human", "autoreply", "bounce", "list", "other")
