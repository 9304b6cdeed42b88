"""quotes.strip_quotes on reply headers in many clients and languages, and on non-replies."""

from __future__ import annotations

import pytest

from mailgate.parse.quotes import strip_quotes


@pytest.mark.parametrize(
    "header",
    [
        "On Mon, Nov 10, 2025 at 9:00 AM Helpdesk <support@helpdesk.example>\nwrote:",
        "Dnia 10.11.2025 o 09:00 Jan Kowalski napisał(a):",
        "pon., 10 lis 2025 o 09:00 Jan Kowalski <jan@firma.example> napisał(a):",
        "po 10. 11. 2025 o 9:00 Helpdesk <support@helpdesk.example> napísal(a):",
        "po 10. 11. 2025 v 9:00 odesílatel Helpdesk <support@helpdesk.example> napsal:",
        "10.11.2025 9:00, Helpdesk пишет:",
        "пн, 10 нояб. 2025 г. в 09:00, Helpdesk <support@helpdesk.example>:",
        "Am 10.11.2025 um 09:00 schrieb Helpdesk <support@helpdesk.example>:",
        "-----Ursprüngliche Nachricht-----\nVon: Helpdesk\nGesendet: Montag",
        "Od: Helpdesk <support@helpdesk.example>\nWysłano: poniedziałek, 10 listopada 2025\n"
        "Do: Jan\nTemat: [#1042]",
        "From: Helpdesk\nDate: Mon, 10 Nov 2025 09:00\nSubject: Re: [#1042]",
    ],
)
def test_reply_headers_in_other_forms(header: str) -> None:
    body = f"New text here.\n\n{header}\n> old text\nold text unquoted\n"
    assert strip_quotes(body) == "New text here."


def test_quote_stripping_keeps_what_is_not_a_reply() -> None:
    assert strip_quotes("My colleague writes:\nthe server is down.") == (
        "My colleague writes:\nthe server is down."
    )
    forward = (
        "Please look at this.\n\n---------- Forwarded message ---------\n"
        "From: Bank <noreply@bank.example>\nDate: Mon, 10 Nov 2025\nSubject: Fwd: x\n\nBody"
    )
    assert strip_quotes(forward) == forward
    inline = "> question one?\nanswer one\n> question two?\nanswer two\n\n> trailing quote\n"
    assert strip_quotes(inline) == "> question one?\nanswer one\n> question two?\nanswer two"
    assert strip_quotes("text\n-- \nJan\nphone") == "text"


def test_inner_html_quotes_keep_answers_inside_a_quote_container() -> None:
    from mailgate.parse.markup import strip_html_quotes

    html = (
        '<div class="gmail_quote"><div class="gmail_attr">On Mon x wrote:</div>'
        "<blockquote>q1<blockquote>older</blockquote></blockquote><div>a1</div>"
        "<blockquote>q2</blockquote><div>a2</div></div>"
    )
    assert "a1" not in strip_html_quotes(html)
    inner = strip_html_quotes(html, inner=True)
    assert "a1" in inner and "a2" in inner
    assert "q1" not in inner and "older" not in inner and "wrote" not in inner


def test_an_address_and_date_line_above_a_quote_is_an_attribution_in_any_language() -> None:
    body = "Answer.\n\nX <a@b.example> sagde den 1.12.2025 (kl. 9):\n> old\n"
    assert strip_quotes(body) == "Answer."
    # Not above a quote: a customer's sentence stays.
    text = "Write to billing@b.example before 5 Dec:\nthe invoice is wrong."
    assert strip_quotes(text) == text
