"""Every template renders in every language, with exactly the variables the code passes."""

from __future__ import annotations

import pytest

from mailgate import config
from mailgate.clock import utcnow
from mailgate.replies.render import LANGUAGES, PAGE_SAMPLE_CONTEXT, SAMPLE_CONTEXT, Renderer

RENDERER = Renderer(config.Settings())


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("kind", sorted(SAMPLE_CONTEXT))
def test_every_mail_template_renders_in_every_language(kind: str, lang: str) -> None:
    assert (RENDERER.settings.template_dir / kind / lang).is_dir()
    rendered = RENDERER.render(
        kind, lang, from_address="support@helpdesk.example", to="jan@customer.example",
        in_reply_to=None, references=(), clock=utcnow, number=42, tag="[#42]",
        **SAMPLE_CONTEXT[kind],
    )  # fmt: skip
    assert "[#42]" in rendered.subject
    assert "42" in rendered.body
    assert "{{" not in rendered.body and "{%" not in rendered.body
    assert b"Content-Language: " + lang.encode() in rendered.raw


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("kind", sorted(PAGE_SAMPLE_CONTEXT))
def test_every_page_renders_in_every_language(kind: str, lang: str) -> None:
    html = RENDERER.page(kind, lang, **PAGE_SAMPLE_CONTEXT[kind])
    assert f'<html lang="{lang}">' in html
    assert 'value="confirm"' in html


def test_a_missing_variable_is_an_error_not_a_blank() -> None:
    import jinja2

    with pytest.raises(jinja2.UndefinedError):
        RENDERER.render(
            "challenge", "en", from_address="support@helpdesk.example", to="a@b.example",
            in_reply_to=None, references=(), clock=utcnow, number=1, tag="[#1]",
        )  # fmt: skip
