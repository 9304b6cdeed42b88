"""The helpdesk rules of issue 20 through the real daemon, over SMTP to the relay sink:
a web fault report is asked for exactly the details it lacks, in its language; the
knowledge-base articles a request names reach the customer and the operators; abusive
mail is flagged to the operators and, once per ticket, to management."""

from __future__ import annotations

import re
import smtplib
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from mailgate.cli import ticket_doc
from mailgate.daemon.runtime import Runtime
from mailgate.tickets import operators
from tests.conftest import make_runtime, make_settings
from tests.support import DaemonThread, RelaySink, SinkMessage

CUSTOMER = "zakaznik@firma.example"


def _mail(subject: str, text: str, language: str, image: bool = False) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Zákazník <{CUSTOMER}>"
    msg["To"] = "support@helpdesk.example"
    msg["Subject"] = subject
    msg["Content-Language"] = language
    msg.set_content(text)
    if image:
        msg.add_attachment(
            b"\x89PNG\r\n\x1a\n", maintype="image", subtype="png", filename="screenshot.png"
        )
    return msg.as_bytes(policy=email_policy.SMTP)


def _text(message: SinkMessage) -> str:
    parsed = message_from_bytes(message.data, policy=email_policy.default)
    assert isinstance(parsed, EmailMessage)
    body = parsed.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


@pytest.fixture
def daemon_rt(db_url: str, tmp_path: Path, sink: RelaySink) -> Any:
    settings = make_settings(db_url, tmp_path, outbound={"relay": f"127.0.0.1:{sink.port}"})
    rt: Runtime = make_runtime(settings)
    yield rt
    rt.close()


def _send(rt: Runtime, sink: RelaySink, *mails: bytes) -> list[SinkMessage]:
    return _send_expecting(rt, sink, list(mails), len(mails))


def _send_expecting(
    rt: Runtime, sink: RelaySink, mails: list[bytes], count: int
) -> list[SinkMessage]:
    """Send ``mails`` over SMTP; return the first ``count`` mails that reach the relay."""
    with DaemonThread(rt) as d, smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=10) as c:
        for raw in mails:
            c.sendmail(CUSTOMER, ["support@helpdesk.example"], raw)
        return sink.wait_for(count)


def test_a_web_fault_report_is_asked_only_for_what_it_lacks(
    daemon_rt: Runtime, sink: RelaySink
) -> None:
    report = _mail(
        "Chyba na stránke",
        "Dobrý deň,\nnaša webová stránka nefunguje, zobrazí sa chyba 500.\n"
        "Používam Windows 11.\nĎakujem\n",
        "sk",
        image=True,
    )
    complete = _mail(
        "Site error",
        "Hello,\nhttps://shop.example/cart shows error 500 in Firefox 128 on Ubuntu.\n",
        "en",
        image=True,
    )
    acks = _send(daemon_rt, sink, report, complete)
    texts = [_text(m) for m in acks]
    sk = next(t for t in texts if t.startswith("Dobrý deň"))
    assert "názov a verziu internetového prehliadača" in sk
    assert "presnú internetovú adresu (URL)" in sk
    assert "operačný systém" not in sk  # Windows 11 was given
    assert "screenshot" not in sk  # the image was attached
    en = next(t for t in texts if t.startswith("Hello"))
    assert "To find a fault on a web page" not in en  # nothing is missing


KB = [
    {"title": "Poczta: rekordy MX", "url": "https://kb.helpdesk.example/mx?lang=pl&v=2",
     "match": r"(?i)\bMX\b|rekord\w* MX|MX.?запис"},
    {"title": "SPF", "url": "https://kb.helpdesk.example/spf", "match": r"(?i)\bSPF\b"},
    {"title": "DKIM", "url": "https://kb.helpdesk.example/dkim", "match": r"(?i)\bDKIM\b"},
    {"title": "DMARC", "url": "https://kb.helpdesk.example/dmarc", "match": r"(?i)\bDMARC\b"},
]  # fmt: skip


def test_knowledge_base_links_reach_the_customer_and_the_operators(
    db_url: str, tmp_path: Path, sink: RelaySink
) -> None:
    settings = make_settings(db_url, tmp_path, outbound={"relay": f"127.0.0.1:{sink.port}"}, kb=KB)
    rt: Runtime = make_runtime(settings)
    with rt.sessions.begin() as s:
        operators.add(s, "anna@helpdesk.example", "Anna", ["technical"], rt.clock())
    secret_words = "Mój rekord MX dla sklep-jana.pl, DMARC i SPF też nie działają."
    mail = _mail("Poczta nie dochodzi", f"Dzień dobry,\n{secret_words}\nJan\n", "pl")
    try:
        messages = _send_expecting(rt, sink, [mail], 2)
    finally:
        rt.close()
    ack = next(m for m in messages if m.rcpt_tos == [CUSTOMER])
    notice = next(m for m in messages if m.rcpt_tos == ["anna@helpdesk.example"])
    ack_text, notice_text = _text(ack), _text(notice)
    links = [
        "- Poczta: rekordy MX: https://kb.helpdesk.example/mx?lang=pl&v=2",
        "- SPF: https://kb.helpdesk.example/spf",
        "- DMARC: https://kb.helpdesk.example/dmarc",
    ]
    for text in (ack_text, notice_text):
        positions = [text.index(line) for line in links]
        assert positions == sorted(positions)  # in the configured order
        assert "DKIM: https" not in text  # not named by the customer
    assert "bazy wiedzy" in ack_text
    assert "sklep-jana.pl" not in ack_text  # the customer's text is never quoted


def test_abusive_mail_is_flagged_to_operators_and_management_once(
    db_url: str, tmp_path: Path, sink: RelaySink
) -> None:
    settings = make_settings(
        db_url,
        tmp_path,
        outbound={"relay": f"127.0.0.1:{sink.port}"},
        helpdesk={"management": "zarzad@helpdesk.example"},
    )
    rt: Runtime = make_runtime(settings)
    with rt.sessions.begin() as s:
        operators.add(s, "anna@helpdesk.example", "Anna", ["technical"], rt.clock())
    abusive = _mail(
        "Znowu nie działa poczta",
        "Kurwa, trzeci raz piszę, wy debile.\nSkrzynka jan@firma.example nie odbiera poczty.\n"
        "W logu mam: error: kurwa.php not found\n",
        "pl",
    )
    polite = _mail(
        "Znowu nie działa poczta",
        "Dzień dobry, trzeci raz piszę.\nSkrzynka jan@firma.example nie odbiera poczty.\n"
        "W logu mam: error: kurwa.php not found\n",
        "pl",
    )
    try:
        with DaemonThread(rt) as d, smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=10) as c:
            c.sendmail(CUSTOMER, ["support@helpdesk.example"], abusive)
            first = sink.wait_for(3)  # ack, operator notice, management
            ack = next(m for m in first if m.rcpt_tos == [CUSTOMER])
            parsed_ack = message_from_bytes(ack.data, policy=email_policy.default)
            # The customer answers the acknowledgement, as abusive as before.
            reply = _mail(
                "Re: " + str(parsed_ack["Subject"]), "Debile, odpiszcie wreszcie!\n", "pl"
            )
            reply_msg = message_from_bytes(reply, policy=email_policy.default)
            reply_msg["In-Reply-To"] = str(parsed_ack["Message-ID"])
            c.sendmail(
                CUSTOMER,
                [str(parsed_ack["Reply-To"])],
                reply_msg.as_bytes(policy=email_policy.SMTP),
            )
            second = sink.wait_for(4)[3:]  # the operators' notice of the reply only
            c.sendmail(CUSTOMER, ["support@helpdesk.example"], polite)
            third = sink.wait_for(6)[4:]
        with rt.sessions() as s:
            doc = ticket_doc(s, 1)
        assert doc is not None
        assert [("abusive" in d["hits"]) for d in doc["rule_hits"]] == [True, True]
    finally:
        rt.close()
    notice = next(m for m in first if m.rcpt_tos == ["anna@helpdesk.example"])
    assert "abusive" in _text(notice).split("The customer wrote:")[0]
    [management] = [m for m in sink.messages if m.rcpt_tos == ["zarzad@helpdesk.example"]]
    told = message_from_bytes(management.data, policy=email_policy.default)
    assert "[#1]" in str(told["Subject"]) and "Znowu nie działa poczta" in str(told["Subject"])
    assert "debile" not in _text(management).lower() and "kurwa" not in _text(management).lower()
    assert "jan@firma.example" not in management.data.decode("utf-8", "replace")
    [reply_notice] = second
    assert reply_notice.rcpt_tos == ["anna@helpdesk.example"]
    assert "abusive" in _text(reply_notice).split("The customer wrote:")[0]
    # No effect on the acknowledgement: the same words as for the polite mail (which
    # only quotes an error message, and is not flagged).
    polite_ack = next(m for m in third if m.rcpt_tos == [CUSTOMER])
    normalize = lambda t: re.sub(r"\d+", "N", t)  # noqa: E731
    assert normalize(_text(ack)) == normalize(_text(polite_ack))
    polite_notice = next(m for m in third if m.rcpt_tos == ["anna@helpdesk.example"])
    assert "abusive" not in _text(polite_notice).split("The customer wrote:")[0]
