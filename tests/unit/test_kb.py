"""Knowledge-base links: up to three articles, in the configured order, chosen by their
expressions; and the [[kb]] tables validated like every other setting."""

from __future__ import annotations

import pytest

from mailgate import config
from mailgate.config import KbArticle
from mailgate.errors import ConfigError
from mailgate.pipeline.kb import suggest

ARTICLES = (
    KbArticle("MX records", "https://kb.example/mx", r"(?i)\bMX\b|rekord\w* MX|MX.?запис"),
    KbArticle("SPF", "https://kb.example/spf", r"(?i)\bSPF\b"),
    KbArticle("DKIM", "https://kb.example/dkim", r"(?i)\bDKIM\b"),
    KbArticle("DMARC", "https://kb.example/dmarc", r"(?i)\bDMARC\b"),
    KbArticle("Webmail", "https://kb.example/webmail?lang=en&x=1", r"(?i)webmail"),
)


def test_articles_come_in_the_configured_order_and_at_most_three() -> None:
    text = "DMARC and DKIM fail, SPF too, and my MX is wrong."
    assert [t for t, _ in suggest(ARTICLES, "", text)] == ["MX records", "SPF", "DKIM"]


@pytest.mark.parametrize(
    ("subject", "text"),
    [
        ("Jak dodać rekord MX?", ""),
        ("", "Как добавить MX-запись для домена?"),
        ("mx", "please help"),
    ],
)
def test_the_subject_or_the_text_in_any_language_matches(subject: str, text: str) -> None:
    assert suggest(ARTICLES, subject, text) == (("MX records", "https://kb.example/mx"),)


def test_nothing_matches_nothing_is_offered() -> None:
    assert suggest(ARTICLES, "Invoice", "Please send the October invoice.") == ()
    assert suggest((), "MX", "MX") == ()


def test_kb_tables_are_validated() -> None:
    with pytest.raises(ConfigError) as caught:
        config.build(
            {
                "kb": [
                    {"title": "", "url": "kb.example/x", "match": "("},
                    {"title": "ok", "url": "https://kb.example/", "match": ""},
                ]
            }
        )
    text = str(caught.value)
    for problem in (
        "kb[0]: title is empty",
        "kb[0]: url must be an http:// or https:// address",
        "kb[0]: match is not a valid regular expression",
        "kb[1]: match is empty",
    ):
        assert problem in text
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        config.build({"kb": [{"title": "t", "url": "https://k.example/", "colour": "red"}]})
    settings = config.build({"kb": [dict(title="t", url="https://kb.example/t", match="x")]})
    assert settings.kb == (KbArticle("t", "https://kb.example/t", "x"),)
