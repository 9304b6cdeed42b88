"""Regression tests for THREATS.md attacks that had no test named for them yet.
Each test is named for the attack it proves (docs/threats-tested.md lists them all)."""

from __future__ import annotations

from importlib.metadata import version

from sqlalchemy import select

from mailgate.daemon.runtime import Runtime
from mailgate.store.models import Article, Attachment
from tests.db.test_pipeline import articles, deliver, sent_messages, tickets
from tests.hostile import worse
from tests.support import make_mail


def test_user_text_is_never_rendered_as_a_template(rt: Runtime) -> None:
    deliver(
        rt,
        make_mail(
            subject="{{ 7*7 }} {% for x in range(3) %}loop{% endfor %}",
            body="{{ config }} {{ ''.__class__.__mro__ }} ${7*7}\n",
        ),
    )
    [ack] = sent_messages(rt)
    [ticket] = tickets(rt)
    [article] = [a for a in articles(rt, ticket.number) if a.direction == "in"]
    # Stored exactly as written, and nothing of it evaluated anywhere.
    assert ticket.subject.startswith("{{ 7*7 }}")
    assert "{{ config }}" in article.text
    assert "49" not in ack.get_content() + ack["Subject"]
    assert "looploop" not in ack.get_content()


def test_html_script_and_event_handlers_are_stripped_before_storing(rt: Runtime) -> None:
    raw = (
        b"From: jan@customer.example\r\nTo: support@helpdesk.example\r\n"
        b"Message-ID: <xss@customer.example>\r\nSubject: html\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b'<p onclick="steal()">hi</p><script>alert(1)</script>'
        b'<a href="javascript:alert(2)">x</a><img src=x onerror=alert(3)>\r\n'
    )
    deliver(rt, raw)
    with rt.sessions() as s:
        html = s.scalars(select(Article.html).where(Article.direction == "in")).one() or ""
    assert "<script" not in html and "onclick" not in html and "onerror" not in html
    assert "javascript:" not in html


def test_attachment_filename_with_path_traversal_is_never_a_path(rt: Runtime) -> None:
    deliver(rt, worse()["path-traversal-filename"])
    with rt.sessions() as s:
        names = list(s.scalars(select(Attachment.filename)))
    assert names, "the attachment was dropped"
    assert all("/" not in n and "\\" not in n and not n.startswith("..") for n in names)


def test_smtp_smuggling_and_starttls_injection_fixed_aiosmtpd_is_installed() -> None:
    # CVE-2024-27305 and CVE-2024-34083 are fixed in aiosmtpd 1.4.6.
    installed = tuple(int(p) for p in version("aiosmtpd").split(".")[:3])
    assert installed >= (1, 4, 6)
